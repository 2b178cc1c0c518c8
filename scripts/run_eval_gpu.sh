#!/usr/bin/env bash
# Evaluation of a checkpoint on one GPU device; the body is shared with the other devices in common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
snn_eval_main GPU "$@"
