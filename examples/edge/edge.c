/* Runs a model exported with `cfctool export CKPT --format c -o DIR` on sequences and prints,
 * one line per sequence, the predicted class and the logits (of the last step, or of every
 * step for per-step models). Per step a sequence holds the input values (a token id for token
 * models) and then dt when the model reads it.
 *
 * On a host the sequences come from stdin, one per line. Built with -DEDGE_EMBEDDED they come
 * from inputs.h (EDGE_VALUES, EDGE_STARTS: what `make inputs.h` makes of a sequences file),
 * for a microcontroller without a file system; printf goes through semihosting there.
 *
 *   cc -O2 -std=c99 -DMODEL=name -DMODEL_UP=NAME -DMODEL_H='"name.h"' -IDIR edge.c DIR/name.c -lm
 */
#include <stdio.h>
#include <stdlib.h>
#include MODEL_H

#define CAT(a, b) a##b
#define XCAT(a, b) CAT(a, b)
#define M(suffix) XCAT(MODEL, suffix)
#define U(suffix) XCAT(MODEL_UP, suffix)
#define PER_STEP_VALUES (U(_N_INPUTS) + U(_DT_INPUT))

static float logits[U(_N_OUTPUTS)];

static void print_logits(void)
{
    int i, best = 0;
    for (i = 1; i < U(_N_OUTPUTS); ++i)
        if (logits[i] > logits[best]) best = i;
    printf("%d", best);
    for (i = 0; i < U(_N_OUTPUTS); ++i) printf(" %.6g", (double)logits[i]);
}

static void run_sequence(const float *values, int n)
{
    int t, steps = n / PER_STEP_VALUES;
    M(_state) s;
    M(_reset)(&s);
    for (t = 0; t < steps; ++t) {
        const float *v = values + t * PER_STEP_VALUES;
        float dt = U(_DT_INPUT) ? v[U(_N_INPUTS)] : 1.0f;
#if U(_TOKEN_INPUT)
        M(_step)(&s, (int32_t)v[0], dt);
#else
        M(_step)(&s, v, dt);
#endif
        if (U(_PER_STEP)) {
            M(_output)(&s, logits);
            if (t) putchar(' ');
            print_logits();
        }
    }
    if (!U(_PER_STEP)) {
        M(_output)(&s, logits);
        print_logits();
    }
    putchar('\n');
}

#ifdef EDGE_EMBEDDED
#include "inputs.h"

int main(void)
{
    unsigned i;
    for (i = 0; i + 1 < sizeof EDGE_STARTS / sizeof EDGE_STARTS[0]; ++i)
        run_sequence(EDGE_VALUES + EDGE_STARTS[i], (int)(EDGE_STARTS[i + 1] - EDGE_STARTS[i]));
    return 0;
}
#else
#define MAX_VALUES (1 << 16)
static float values[MAX_VALUES];
static char line[1 << 20];

int main(void)
{
    while (fgets(line, sizeof line, stdin)) {
        int n = 0;
        char *p = line, *end;
        for (;;) {
            float v = strtof(p, &end);
            if (end == p || n == MAX_VALUES) break;
            values[n++] = v;
            p = end;
        }
        if (n) run_sequence(values, n);
    }
    return 0;
}
#endif
