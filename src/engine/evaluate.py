"""Top-1 / top-5 / cross-entropy over a whole evaluation set, counted exactly.

Metrics are summed on the host in float64 from the logits of each batch, so every image counts once and
no batch size or padding can bias the averages. Rows labelled ``< 0`` (images the pipeline could not read)
are skipped and counted. Under data parallelism each rank evaluates its disjoint shard and the sums are
added across ranks before the ratios are taken.
"""
import logging
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["EvalResult", "batch_metrics", "evaluate"]

logger = logging.getLogger("snn_mlp")


@dataclass
class EvalResult:
    top1: float  # percent of the readable images
    top5: float
    loss: float  # mean cross-entropy
    num_images: int  # images scored
    skipped: int  # rows with label < 0
    seconds: float


def batch_metrics(logits, labels, topk=5):
    """``[top-1 hits, top-k hits, summed cross-entropy, scored rows, skipped rows]`` of one batch (float64).

    ``k`` is capped at the number of classes. Ties are resolved in favour of the lower class index, as
    ``argmax`` does.
    """
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits {logits.shape} and labels {labels.shape} do not match")
    valid = labels >= 0
    logits, labels = logits[valid], labels[valid]
    if labels.size and labels.max() >= logits.shape[1]:
        raise ValueError(f"label {labels.max()} out of range for {logits.shape[1]} classes")
    k = min(topk, logits.shape[1])
    rows = np.arange(labels.size)
    target = logits[rows, labels]
    # Rank of the true class = how many classes beat it (strictly, or equal with a lower index).
    index = np.arange(logits.shape[1])
    beaten = (logits > target[:, None]) | ((logits == target[:, None]) & (index[None, :] < labels[:, None]))
    rank = beaten.sum(axis=1)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    loss = (log_norm - shifted[rows, labels]).sum()
    return np.array([(rank < 1).sum(), (rank < k).sum(), loss, labels.size, (~valid).sum()], np.float64)


def evaluate(net, dataset, topk=5, all_reduce=None, log_interval=0, desc="val"):
    """Evaluate ``net`` (put in inference mode) on every batch of ``dataset`` (columns image, label).

    ``all_reduce(np.ndarray) -> np.ndarray`` sums the per-rank totals under data parallelism.
    ``log_interval > 0`` logs progress every that many batches.
    """
    start = time.time()
    net.set_train(False)
    totals = np.zeros(5, np.float64)
    num_batches = dataset.get_dataset_size()
    for i, (images, labels) in enumerate(dataset.create_tuple_iterator(num_epochs=1)):
        totals += batch_metrics(net(images).asnumpy(), labels.asnumpy(), topk)
        if log_interval and ((i + 1) % log_interval == 0 or i + 1 == num_batches):
            seen = max(totals[3], 1.0)
            logger.info("%s [%d/%d] top1 %.2f%% top5 %.2f%% loss %.4f (%d images)", desc, i + 1, num_batches,
                        100.0 * totals[0] / seen, 100.0 * totals[1] / seen, totals[2] / seen, int(totals[3]))
    if all_reduce is not None:
        totals = np.asarray(all_reduce(totals), np.float64)
    scored = int(round(totals[3]))
    if scored == 0:
        raise ValueError(f"{desc}: no readable image to evaluate ({int(round(totals[4]))} skipped)")
    return EvalResult(top1=100.0 * totals[0] / scored, top5=100.0 * totals[1] / scored, loss=totals[2] / scored,
                      num_images=scored, skipped=int(round(totals[4])), seconds=time.time() - start)
