"""The bound every demo puts on its agents' model calls with the scripted model.

Far above the scripted model's latency, so it never cuts a healthy call short; it is
there so that a hanging model fails the call instead of holding the run for good
(`phalanx simulate` found each demo hanging without one).
"""

#: Seconds a scripted agent's call (or whole loop) may take.
SCRIPTED_CALL_TIMEOUT_S = 20.0
