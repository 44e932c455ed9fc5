"""Bad-pixel mask reference-file monitor (``MaskRefModel``).

What it tells an instrument scientist
-------------------------------------
* ``num_<flag>_pix`` for each DQ flag of ``parameters.count_flags`` (default
  DO_NOT_USE, DEAD, HOT, WARM, LOW_QE, TELEGRAPH, NONLINEAR,
  OTHER_BAD_PIXEL): how many science pixels carry that flag. The detector
  value follows the health of the whole array (radiation damage adds HOT,
  WARM and TELEGRAPH pixels; a change of the RFP's classification thresholds
  moves a whole class at once); an amp or a cluster of super-pixels that
  changes alone points at a local defect (a new dead cluster, a
  contamination spot raising LOW_QE, a channel going noisy).
* ``num_bad_pix``: pixels with at least one of ``parameters.bad_flags``
  (the complement of the operable pixels, comparable with the TVAC
  operability tables).
* ``num_newly_flagged_pix`` and ``num_newly_cleared_pix``: pixels that are
  bad now but were good in the previous mask of the same detector (by
  USEAFTER), and the reverse. The per-flag counts only show net changes; these
  show turnover, and a cluster of new defects in one super-pixel stands out
  even where the detector-wide count hardly moves. Many cleared pixels at
  once usually means a processing problem rather than healing.

  These two metrics exist only when a previous mask is available: for the
  first mask of a detector (or when the previous mask is unreadable) they are
  **omitted**, not reported as 0. A 0 would claim "nothing changed" and
  would make the next delivery's ``change`` evaluation compare a real
  turnover against a fictitious 0; an omitted metric is skipped by the
  relative evaluators ("previous file lacks this metric") and by the trend
  history, so both start cleanly from the first real comparison.

Every metric is a count of science pixels (the 4-pixel reference border is
excluded), reported for the detector, the 32 amps and the 1024 super-pixels.
"""

from __future__ import annotations

import numpy as np

from ..science.dq import bad_pixels, dq_frame, flag_bits
from ..science.metrics import Metric
from ..science.monitor import Monitor, MonitoringError
from ..science.scales import count_flags, count_true

COUNT_UNIT = "pix"
DEFAULT_FLAGS = ("DO_NOT_USE", "DEAD", "HOT", "WARM", "LOW_QE", "TELEGRAPH", "NONLINEAR", "OTHER_BAD_PIXEL")


class MaskMonitor(Monitor):
    name = "mask"
    model = "MaskRefModel"
    version = "1.0.0"
    compares_previous_file = True

    def metrics(self, model, parameters, previous=None):
        dq = dq_frame(self, model)
        counted = flag_bits(parameters.get("count_flags", DEFAULT_FLAGS), "mask parameters.count_flags")
        bad = flag_bits(parameters.get("bad_flags", DEFAULT_FLAGS), "mask parameters.bad_flags")
        bad_bits = 0
        for bit in bad.values():
            bad_bits |= bit

        out = []
        names = {f"num_{flag.lower()}_pix": bit for flag, bit in counted.items()}
        for (name, values), flag in zip(count_flags(dq, names).items(), counted):
            out.append(Metric(name, COUNT_UNIT, values, f"science pixels flagged {flag}"))

        is_bad = bad_pixels(dq, bad_bits)
        bad_list = "|".join(bad)
        out.append(Metric("num_bad_pix", COUNT_UNIT, count_true(is_bad), f"science pixels with any of {bad_list}"))

        previous_dq = self._previous_dq(previous)
        if previous_dq is not None:
            was_bad = bad_pixels(previous_dq, bad_bits)
            newly_flagged = np.greater(is_bad, was_bad)  # bad now, good before
            newly_cleared = np.greater(was_bad, is_bad)  # good now, bad before
            out.append(Metric("num_newly_flagged_pix", COUNT_UNIT, count_true(newly_flagged),
                              f"science pixels with any of {bad_list} now but none in the previous mask"))
            out.append(Metric("num_newly_cleared_pix", COUNT_UNIT, count_true(newly_cleared),
                              f"science pixels with any of {bad_list} in the previous mask but none now"))
        return out

    def _previous_dq(self, previous) -> np.ndarray | None:
        """The previous mask's DQ frame, or None when there is none or it is unusable.

        An unusable previous mask got its own error when it was measured; it
        must not stop the current file's per-flag counts, so the comparison
        metrics are simply omitted.
        """
        if previous is None:
            return None
        try:
            return dq_frame(self, previous)
        except MonitoringError:
            return None
