"""Release gates: provenance policy, file safety, memorisation, PII and safety probes.

Loading the area registers its hold on widening with access (see `holds`).
"""

from ringfence.gates import holds as _holds

_holds.register()
