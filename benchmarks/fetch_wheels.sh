#!/usr/bin/env bash
# Download the wheels gpu_check.sh needs on a bare GPU machine (Python 3.12, x86-64, no package index):
# litdata and the packages it imports that such a machine lacks. Run once where pip can reach PyPI:
#   bash benchmarks/fetch_wheels.sh            # into .whl/ (keep it out of git: echo /.whl/ >> .git/info/exclude)
# Versions are those lit-llm is developed against; --no-deps so nothing else (torch!) is fetched.
set -euo pipefail
dest=${1:-.whl}
mkdir -p "$dest"
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dest" \
  litdata==0.2.76 boto3==1.43.11 botocore==1.43.11 s3transfer==0.17.0 jmespath==1.1.0 obstore==0.12.1 \
  jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0
ls -1 "$dest"
