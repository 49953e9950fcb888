"""PhysioNet/CinC Challenge 2012 as one long table: the user's side of `cfctool train own`.

Each stay is a file `RECORDID.txt` of `Time,Parameter,Value` rows (Time as HH:MM since ICU
admission); the outcomes are a second table. This writes the narrow form cfctool reads:

    RecordID,hours,Parameter,Value

one row per observation (the static descriptors Age, Gender, Height, ICUType and Weight are
observations at hour 0; times in hours, so that Δt is in hours; -1, the challenge's "not recorded", is dropped, and so is the
RecordID row itself), and the outcome tables of the sets as one:

    python physionet_to_table.py observations.csv outcomes.csv set-a.tar.gz [set-b.tar.gz] [--stays N]

(--stays N: only the first N stays of each set, for a quick check.)

Standard library only: a user's few lines, not part of the package.
"""

import csv
import sys
import tarfile


def rows(archive_path, stays=None):
    with tarfile.open(archive_path, "r:gz") as archive:
        members = [m for m in sorted(archive.getmembers(), key=lambda m: m.name)
                   if m.isfile() and m.name.endswith(".txt")]
        for member in members[:stays]:
            record = member.name.rsplit("/", 1)[-1][:-4]
            lines = archive.extractfile(member).read().decode("utf-8").splitlines()
            for line in lines[1:]:  # the header: Time,Parameter,Value
                time, parameter, value = line.split(",")
                hours, minutes = time.split(":")
                if parameter == "RecordID" or not parameter or (value == "-1" and parameter in
                                                               ("Age", "Gender", "Height", "ICUType", "Weight")):
                    continue
                yield record, round(int(hours) + int(minutes) / 60, 4), parameter, value


def main(target, outcomes, *sources, stays=None):
    with open(target, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["RecordID", "hours", "Parameter", "Value"])
        for source in sources:
            out.writerows(rows(source, stays))
    with open(outcomes, "w", newline="") as fh:  # Outcomes-a.txt beside set-a.tar.gz, ...
        for i, source in enumerate(sources):
            table = source.replace("set-", "Outcomes-").replace(".tar.gz", ".txt")
            with open(table) as src:
                lines = src.read().splitlines(keepends=True)
            fh.writelines(lines if i == 0 else lines[1:])


if __name__ == "__main__":
    args = sys.argv[1:]
    limit = None
    if "--stays" in args:
        at = args.index("--stays")
        limit = int(args[at + 1])
        del args[at:at + 2]
    main(*args, stays=limit)
