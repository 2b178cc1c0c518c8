#!/usr/bin/env bash
# Training on one Ascend device; the body is shared with the other devices in common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
snn_standalone_train_main Ascend "$@"
