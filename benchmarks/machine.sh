#!/usr/bin/env bash
# One line naming the machine a benchmark ran on (for the header of its log).
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/Model name: *//p'), torch threads $(.venv/bin/python -c 'import torch; print(torch.get_num_threads())')"
