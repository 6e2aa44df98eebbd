#!/usr/bin/env bash
# The reduced ordering-mutation run (the sites marked `ci` in mutation/expected.tsv): each
# of those orderings is weakened in a scratch copy of the crate and the suite named in the
# table must fail (or, for the ones listed as redundant, pass). The full run over every
# non-Relaxed ordering and fence in src/ is one command: `python3 mutation/mutants.py`.
# Either way the runner first checks that every ordering site in src/ is in the table.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 mutation/mutants.py --reduced
