"""``ceco3d-synth``: a synthetic long-tailed ScanNet200 in the raw ScanNet layout (``generate``),
built from a class catalogue (``classes``), mesh primitives (``mesh``) and room layouts
(``scene``). Nothing in the real preprocessing imports it."""
