/* The least a Cortex-M4 needs to run edge.c under QEMU (-M mps2-an386): a vector table, the
 * FPU switched on (the code is built for -mfloat-abi=hard), .data copied from flash and .bss
 * zeroed, then main() and a semihosting exit with its status. */
#include <stdint.h>

extern uint32_t __stack_top, __data_load, __data_start, __data_end, __bss_start, __bss_end;
extern int main(void);
extern void initialise_monitor_handles(void);
extern void exit(int);

void reset_handler(void)
{
    uint32_t *src = &__data_load, *dst = &__data_start;
    volatile uint32_t *cpacr = (volatile uint32_t *)0xE000ED88u;
    *cpacr |= 0xFu << 20; /* CP10 and CP11: full access to the FPU */
    __asm volatile("dsb\n\tisb");
    while (dst < &__data_end) *dst++ = *src++;
    for (dst = &__bss_start; dst < &__bss_end;) *dst++ = 0;
    initialise_monitor_handles();
    exit(main());
}

/* newlib's exit() runs the init/fini arrays; without the usual crt files these hooks are empty */
void _init(void) {}
void _fini(void) {}

static void hang(void)
{
    for (;;) {}
}

__attribute__((section(".vectors"), used)) static const void *const vectors[16] = {
    &__stack_top, (const void *)reset_handler, (const void *)hang, (const void *)hang,
    (const void *)hang, (const void *)hang, (const void *)hang, 0, 0, 0, 0,
    (const void *)hang, (const void *)hang, 0, (const void *)hang, (const void *)hang,
};
