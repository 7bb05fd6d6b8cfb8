"""Architecture search, the competition template's way (`tinycls nas`): Optuna samples a network
from the template's space of seven slots, each a module kind with its repeat, channels, kernel,
stride, expansion, squeeze-excite and activation; a network over the MACs budget is pruned
before it trains; the others get a short proxy training on the prepared cache (a per-class
subset of train, a few epochs, plain cross-entropy) and report (validation macro F1, MACs), the
two objectives of a multi-objective study. The Pareto front becomes a table, a plot and spec
files that `student.arch: nas:<file>` takes.

The study lives in a storage so that it survives an interruption (a rerun continues it, up to
`trials` trained trials) and so that several workers share it: Optuna's journal file (the
default, no server; workers on one machine) or an RDB URL (PostgreSQL: workers on many
machines). A worker that dies mid-trial leaves its trial RUNNING; the other workers on this
machine (its process is gone), or with an RDB any worker (its heartbeat stopped), fail it and
queue its network again, so another worker trains the same parameters.

Test labels are never read: the proxy trains on train and scores on val.
"""
