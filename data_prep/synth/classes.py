"""The synthetic generator's class catalogue: geometry, colour and frequency per ScanNet200 class.

Each entry is a ScanNet200 class (its raw id comes from ``ceco3d.data.label_sets``) with the NYU40
id the real label table gives it, a shape, where it goes (floor, wall, ceiling or on top of
furniture), size ranges in metres and colour statistics. ``rate`` (objects per 25 m^2 of floor)
shapes the long tail; some classes are deliberately close in shape and colour (chair / office
chair / stool, table / desk / dining table, box / storage bin / cabinet, pillow / cushion,
trash can / trash bin, picture / poster) so the task is not trivial.

The first five common and five tail classes (what the demo's ``--classes 15`` takes, with
wall, floor, chair, table and couch) each have a signature of their own: a saturated colour no
other class comes near and a floor-standing shape a few voxels across. The tail ones are rare
(about 0.03 per 25 m^2 besides the one train and one val scene they are placed in by rule), so
the training split keeps ScanNet200's long tail: head, common and tail are the thirds of these
classes by training point count, with point and center imbalance factors of thousands and tens.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace

from ceco3d.data.label_sets import SCANNET200

Range = tuple[float, float]

NYU40_NAMES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)  # fmt: skip

LABEL_TABLE_COLUMNS = (
    "id", "raw_category", "category", "count", "nyu40id", "eigen13id", "nyuClass", "nyu40class",
    "eigen13class", "ModelNet40", "ModelNet10", "ShapeNetCore55", "synsetoffset", "wnsynsetid",
    "wnsynsetkey", "mpcat40", "mpcat40index",
)  # fmt: skip

STRUCTURE = ("wall", "floor", "ceiling")


@dataclass(frozen=True)
class SynthClass:
    name: str  # raw_category written into the aggregation (or one of ``aliases``)
    nyu40id: int
    shape: str  # a builder of data_prep.synth.mesh.SHAPES, or "structure"
    place: str  # "floor", "wall", "ceiling" or "top" (on furniture, else the floor)
    size: tuple[Range, Range, Range]  # width (x), depth (y), height (z); depth 0: round
    color: tuple[int, int, int]
    color_std: float
    rate: float
    elevation: Range = (0.0, 0.0)  # bottom height of wall objects
    aliases: tuple[str, ...] = ()
    raw_id: int | None = None  # None: the ScanNet200 id of ``name``
    category: str | None = None  # None: ``name``
    parent: str = ""  # the class this one is a close relative of (the fine-grained set)

    @property
    def id(self) -> int:
        return (
            self.raw_id
            if self.raw_id is not None
            else SCANNET200.ids[SCANNET200.names.index(self.name)]
        )

    @property
    def group(self) -> str:
        """ScanNet200 group (head / common / tail), "" outside ScanNet200."""
        if self.name not in SCANNET200.names:
            return ""
        return SCANNET200.group_of_class[SCANNET200.names.index(self.name)]


def _c(name, nyu40id, shape, place, w, d, h, color, std, rate, **kw) -> SynthClass:
    return SynthClass(name, nyu40id, shape, place, (w, d, h), color, std, rate, **kw)


NONE: Range = (0.0, 0.0)
# Within each ScanNet200 group, classes are listed in the order --classes takes them.
# fmt: off
CATALOGUE = (
    # head
    _c("wall", 1, "structure", "", NONE, NONE, NONE, (200, 195, 185), 20, 0),
    _c("floor", 2, "structure", "", NONE, NONE, NONE, (140, 115, 90), 25, 0),
    _c("chair", 5, "chair", "floor", (0.42, 0.5), (0.42, 0.5), (0.8, 0.95), (120, 80, 50), 30, 3.0),
    _c("table", 7, "table", "floor", (0.8, 1.6), (0.6, 1.0), (0.72, 0.78), (150, 110, 70), 25, 1.5),
    _c("couch", 6, "sofa", "floor", (1.6, 2.2), (0.8, 0.95), (0.75, 0.9), (110, 100, 130), 35,
       0.5),
    _c("door", 8, "box", "wall", (0.8, 0.95), (0.04, 0.06), (2.0, 2.1), (160, 120, 80), 30, 1.0,
       aliases=("doors",)),
    _c("cabinet", 3, "box", "floor", (0.5, 1.2), (0.4, 0.6), (0.7, 1.1), (170, 140, 100), 30, 0.8,
       aliases=("cabinets",)),
    _c("bed", 4, "bed", "floor", (1.0, 1.8), (1.9, 2.1), (0.8, 1.1), (200, 190, 180), 25, 0.25),
    _c("desk", 14, "desk", "floor", (1.0, 1.6), (0.6, 0.8), (0.72, 0.76), (160, 120, 80), 25, 0.6),
    _c("office chair", 5, "office_chair", "floor", (0.5, 0.6), (0.5, 0.6), (0.9, 1.15),
       (50, 50, 55), 15, 0.8),
    _c("window", 9, "box", "wall", (0.8, 1.6), (0.05, 0.1), (1.0, 1.4), (190, 200, 210), 20, 0.8,
       elevation=(0.8, 1.1)),
    _c("picture", 11, "box", "wall", (0.3, 0.8), (0.02, 0.04), (0.3, 0.6), (140, 120, 110), 45,
       0.8, elevation=(1.2, 1.6), aliases=("pictures",)),
    _c("bookshelf", 10, "bookshelf", "floor", (0.6, 1.0), (0.3, 0.4), (1.5, 2.0), (140, 100, 70),
       25, 0.3, aliases=("bookshelves",)),
    _c("shelf", 15, "shelf", "floor", (0.6, 1.2), (0.3, 0.45), (0.8, 1.8), (150, 150, 150), 30,
       0.35),
    _c("pillow", 18, "box", "top", (0.4, 0.6), (0.3, 0.45), (0.1, 0.18), (210, 200, 190), 35, 0.6,
       aliases=("pillows",)),
    _c("monitor", 40, "monitor", "top", (0.45, 0.65), (0.18, 0.22), (0.35, 0.5), (30, 30, 35), 10,
       0.6),
    _c("curtain", 16, "box", "wall", (0.6, 1.5), (0.06, 0.12), (1.8, 2.3), (150, 130, 120), 40,
       0.3, elevation=(0.1, 0.4), aliases=("curtains",)),
    _c("sink", 34, "box", "wall", (0.45, 0.6), (0.4, 0.5), (0.15, 0.22), (225, 225, 225), 10, 0.2,
       elevation=(0.7, 0.8)),
    _c("toilet", 33, "toilet", "floor", (0.38, 0.42), (0.65, 0.75), (0.75, 0.8), (235, 235, 235),
       8, 0.12),
    _c("lamp", 35, "lamp", "top", (0.25, 0.4), (0.25, 0.4), (0.4, 0.6), (220, 200, 160), 25, 0.3),
    _c("box", 29, "box", "floor", (0.25, 0.6), (0.2, 0.5), (0.2, 0.5), (170, 140, 100), 30, 0.8,
       aliases=("boxes",)),
    _c("ceiling", 22, "structure", "", NONE, NONE, NONE, (215, 215, 210), 15, 0),
    _c("trash can", 39, "cylinder", "floor", (0.25, 0.4), NONE, (0.35, 0.7), (90, 90, 95), 30,
       0.6),
    _c("whiteboard", 30, "box", "wall", (1.2, 2.4), (0.02, 0.04), (0.9, 1.2), (235, 235, 235), 8,
       0.2, elevation=(0.8, 1.0)),
    _c("radiator", 39, "box", "wall", (0.6, 1.4), (0.08, 0.14), (0.5, 0.7), (220, 220, 215), 12,
       0.3, elevation=(0.1, 0.2)),
    _c("refrigerator", 24, "box", "floor", (0.6, 0.9), (0.6, 0.75), (1.5, 1.9), (225, 225, 225),
       15, 0.12),
    _c("armchair", 5, "sofa", "floor", (0.7, 0.95), (0.75, 0.9), (0.75, 0.95), (120, 100, 120),
       35, 0.25),
    _c("coffee table", 7, "table", "floor", (0.8, 1.2), (0.5, 0.7), (0.38, 0.48), (140, 100, 70),
       25, 0.2),
    _c("nightstand", 32, "box", "floor", (0.4, 0.55), (0.35, 0.45), (0.5, 0.65), (150, 110, 75),
       25, 0.2),
    _c("kitchen cabinet", 3, "box", "wall", (0.6, 1.8), (0.3, 0.38), (0.6, 0.8), (175, 145, 105),
       30, 0.25, elevation=(1.4, 1.6), aliases=("kitchen cabinets",)),
    _c("towel", 27, "box", "wall", (0.3, 0.5), (0.03, 0.05), (0.4, 0.7), (200, 180, 170), 45, 0.15,
       elevation=(0.8, 1.2)),
    _c("tv", 25, "box", "wall", (0.9, 1.4), (0.06, 0.1), (0.55, 0.8), (25, 25, 30), 8, 0.15,
       elevation=(0.9, 1.2)),
    _c("dresser", 17, "box", "floor", (0.9, 1.5), (0.45, 0.55), (0.8, 1.0), (150, 110, 75), 25,
       0.15),
    _c("stool", 40, "stool", "floor", (0.3, 0.4), NONE, (0.45, 0.75), (130, 95, 60), 30, 0.2),
    _c("book", 23, "box", "top", (0.15, 0.25), (0.2, 0.3), (0.02, 0.05), (150, 60, 60), 50, 0.6,
       aliases=("books",)),
    _c("mirror", 19, "box", "wall", (0.4, 0.8), (0.02, 0.03), (0.6, 1.0), (180, 190, 195), 20, 0.1,
       elevation=(1.0, 1.2)),
    _c("wardrobe", 39, "box", "floor", (0.9, 1.6), (0.55, 0.65), (1.8, 2.1), (160, 120, 80), 25,
       0.08, aliases=("wardrobe closet", "closet wardrobe")),
    # common
    _c("ottoman", 39, "box", "floor", (0.55, 0.75), (0.55, 0.75), (0.4, 0.48), (230, 0, 230), 8,
       0.3),
    _c("bench", 39, "table", "floor", (1.2, 1.6), (0.35, 0.45), (0.42, 0.48), (255, 128, 0), 8,
       0.3),
    _c("piano", 39, "box", "floor", (1.4, 1.55), (0.55, 0.65), (1.1, 1.3), (25, 25, 30), 6, 0.1),
    _c("laundry basket", 40, "cylinder", "floor", (0.45, 0.55), NONE, (0.5, 0.6), (0, 230, 230),
       8, 0.3),
    _c("suitcase", 40, "box", "floor", (0.45, 0.55), (0.25, 0.3), (0.65, 0.75), (20, 40, 230), 8,
       0.3),
    _c("cushion", 18, "box", "top", (0.35, 0.5), (0.35, 0.5), (0.1, 0.15), (150, 110, 130), 40,
       0.15),
    _c("end table", 7, "table", "floor", (0.45, 0.6), (0.45, 0.6), (0.5, 0.6), (145, 105, 70), 25,
       0.1),
    _c("dining table", 7, "table", "floor", (1.4, 2.0), (0.8, 1.0), (0.73, 0.77), (140, 100, 65),
       25, 0.06),
    _c("keyboard", 40, "box", "top", (0.4, 0.47), (0.12, 0.16), (0.02, 0.04), (40, 40, 45), 15,
       0.2),
    _c("bag", 37, "box", "floor", (0.3, 0.45), (0.15, 0.25), (0.25, 0.4), (80, 70, 90), 40, 0.12),
    _c("printer", 40, "box", "top", (0.4, 0.5), (0.35, 0.45), (0.2, 0.3), (200, 200, 200), 20,
       0.08),
    _c("microwave", 40, "box", "top", (0.45, 0.55), (0.33, 0.4), (0.26, 0.32), (200, 200, 205),
       30, 0.08),
    _c("bottle", 40, "bottle", "top", (0.06, 0.09), NONE, (0.2, 0.3), (90, 140, 110), 50, 0.15),
    _c("basket", 40, "cylinder", "floor", (0.3, 0.45), NONE, (0.2, 0.35), (170, 130, 80), 25,
       0.06),
    _c("fan", 40, "lamp", "floor", (0.35, 0.45), (0.35, 0.45), (0.9, 1.3), (220, 220, 220), 20,
       0.05),
    _c("laptop", 40, "laptop", "top", (0.32, 0.38), (0.22, 0.26), (0.2, 0.25), (60, 60, 65), 25,
       0.12),
    _c("oven", 38, "box", "floor", (0.55, 0.6), (0.55, 0.65), (0.85, 0.9), (70, 70, 75), 20, 0.04),
    _c("container", 40, "box", "top", (0.15, 0.3), (0.1, 0.25), (0.1, 0.25), (180, 180, 160), 50,
       0.06),
    _c("telephone", 40, "box", "top", (0.18, 0.22), (0.18, 0.22), (0.08, 0.12), (40, 40, 40), 25,
       0.06),
    _c("light", 38, "box", "wall", (0.2, 0.4), (0.1, 0.15), (0.1, 0.2), (240, 230, 200), 20, 0.05,
       elevation=(1.8, 2.1)),
    _c("mat", 20, "box", "floor", (0.6, 1.2), (0.4, 0.8), (0.01, 0.02), (130, 60, 50), 40, 0.05),
    _c("storage bin", 40, "box", "floor", (0.35, 0.6), (0.3, 0.45), (0.25, 0.4), (180, 180, 190),
       40, 0.05),
    _c("mattress", 4, "box", "floor", (0.9, 1.6), (1.9, 2.0), (0.15, 0.25), (225, 220, 210), 15,
       0.03),
    _c("ceiling light", 38, "box", "ceiling", (0.5, 1.2), (0.3, 0.6), (0.04, 0.08),
       (245, 245, 235), 10, 0.1),
    _c("trash bin", 39, "cylinder", "floor", (0.25, 0.35), NONE, (0.3, 0.5), (100, 100, 105), 30,
       0.05),
    # tail
    _c("bucket", 40, "cylinder", "floor", (0.4, 0.5), NONE, (0.4, 0.5), (0, 190, 0), 8, 0.03),
    _c("ball", 40, "sphere", "floor", (0.45, 0.55), NONE, NONE, (245, 235, 0), 8, 0.03),
    _c("fire extinguisher", 40, "cylinder", "floor", (0.24, 0.28), NONE, (0.75, 0.85),
       (230, 0, 0), 8, 0.03),
    _c("guitar", 40, "guitar", "floor", (0.45, 0.5), (0.14, 0.16), (1.1, 1.2), (120, 0, 255),
       8, 0.03),
    _c("speaker", 40, "box", "floor", (0.35, 0.4), (0.3, 0.35), (0.8, 0.95), (0, 110, 110),
       8, 0.03),
    _c("cup", 40, "cylinder", "top", (0.07, 0.09), NONE, (0.08, 0.12), (220, 210, 200), 40, 0.04,
       aliases=("cups",)),
    _c("mouse", 40, "box", "top", (0.06, 0.07), (0.1, 0.12), (0.03, 0.04), (50, 50, 55), 20, 0.03),
    _c("plate", 40, "cylinder", "top", (0.2, 0.28), NONE, (0.015, 0.025), (235, 235, 230), 15,
       0.02),
    _c("clock", 40, "box", "wall", (0.25, 0.35), (0.04, 0.06), (0.25, 0.35), (210, 210, 200), 30,
       0.02, elevation=(1.8, 2.0)),
    _c("paper", 26, "box", "top", (0.21, 0.3), (0.28, 0.32), (0.003, 0.01), (245, 245, 245), 8,
       0.03, aliases=("papers",)),
    _c("toaster", 40, "box", "top", (0.25, 0.3), (0.15, 0.2), (0.18, 0.22), (190, 190, 195), 25,
       0.01),
    _c("light switch", 38, "box", "wall", (0.07, 0.09), (0.01, 0.02), (0.1, 0.12),
       (240, 240, 235), 8, 0.03, elevation=(1.1, 1.3)),
    _c("power outlet", 40, "box", "wall", (0.07, 0.09), (0.01, 0.02), (0.07, 0.09),
       (235, 235, 230), 8, 0.02, elevation=(0.2, 0.4)),
    _c("tissue box", 40, "box", "top", (0.22, 0.25), (0.11, 0.13), (0.08, 0.12), (200, 170, 190),
       40, 0.015),
    _c("hat", 40, "cylinder", "top", (0.25, 0.3), NONE, (0.1, 0.14), (90, 70, 60), 40, 0.01),
    _c("tray", 40, "box", "top", (0.35, 0.45), (0.25, 0.35), (0.02, 0.04), (120, 90, 60), 40,
       0.01),
    _c("bowl", 40, "bowl", "top", (0.14, 0.2), NONE, (0.06, 0.09), (215, 205, 190), 35, 0.01),
    _c("candle", 40, "cylinder", "top", (0.05, 0.08), NONE, (0.08, 0.2), (240, 235, 210), 15,
       0.005),
    _c("vent", 40, "box", "wall", (0.3, 0.5), (0.02, 0.04), (0.15, 0.25), (200, 200, 200), 15,
       0.015, elevation=(2.0, 2.2)),
    _c("poster", 11, "box", "wall", (0.5, 0.8), (0.005, 0.01), (0.7, 1.0), (160, 140, 170), 50,
       0.01, elevation=(1.0, 1.3)),
    _c("calendar", 40, "box", "wall", (0.25, 0.35), (0.005, 0.01), (0.35, 0.5), (230, 225, 215),
       30, 0.01, elevation=(1.2, 1.5)),
    _c("water bottle", 40, "bottle", "top", (0.06, 0.08), NONE, (0.18, 0.25), (170, 200, 230), 40,
       0.01),
    _c("soap dispenser", 40, "bottle", "top", (0.07, 0.09), NONE, (0.15, 0.2), (210, 220, 230),
       40, 0.005),
)

# Raw categories outside ScanNet200, as in real scenes: ScanNet20 still scores this one (NYU40
# 39, otherfurniture); its `category` cell carries the real table's trailing space.
EXTRA = (
    _c("wardrobe cabinet", 39, "box", "floor", (0.8, 1.2), (0.5, 0.6), (1.6, 2.0), (165, 125, 85),
       25, 0.1, raw_id=1177, category="wardrobe "),
)
# fmt: on
BY_NAME = {c.name: c for c in CATALOGUE + EXTRA}


# The fine-grained class set (``ceco3d-synth --class-set fine_grained``, the benchmark of
# ``ceco3d-demo`` and ``ceco3d-grid``'s benchmark): 45 classes, 15 of each ScanNet200 group, where
# most common and tail classes are close relatives of a head or common class, as ScanNet200's
# are of the NYU40 classes (office chair of chair, kitchen cabinet of cabinet): the parent's shape
# family, placement, colour statistics and size, with a colour shift of one to three of the
# parent's colour deviations and a size of their own. A few keep a signature (a colour and shape
# that no other class has). Sizes stay at least three 8 cm voxels across, so that every class can
# be learned when it is frequent (``--balanced``); what makes the tail hard is only its rarity.


def _kin(name, parent, shift, rate, size=None, shape=None, place=None, elevation=None):
    """Class ``name`` as a relative of ``parent``: its colour shifted by ``shift`` (RGB), its
    own size, shape or placement where given; the label table's ids come from ``name``."""
    base, own = BY_NAME[parent], BY_NAME[name]
    color = tuple(int(min(255, max(0, c + d))) for c, d in zip(base.color, shift, strict=True))
    return replace(
        base, name=name, nyu40id=own.nyu40id, aliases=own.aliases, color=color, rate=rate,
        size=size or base.size, shape=shape or base.shape, place=place or base.place,
        elevation=elevation or base.elevation, raw_id=None, category=None, parent=parent,
    )  # fmt: skip


def _own(name, rate):
    """Class ``name`` as the catalogue has it (its own signature), at frequency ``rate``."""
    return replace(BY_NAME[name], rate=rate)


# fmt: off
FINE_GRAINED = (
    # head: the parents
    _own("wall", 0), _own("floor", 0), _own("chair", 3.0), _own("table", 1.5),
    _own("couch", 0.6), _own("door", 1.0), _own("cabinet", 1.0), _own("bed", 0.35),
    _own("window", 0.8), _own("picture", 2.5), _own("bookshelf", 0.35), _own("pillow", 2.5),
    _own("box", 2.5), _own("trash can", 2.0), _own("lamp", 2.0),
    # common: relatives of head classes, two with a signature
    _kin("ottoman", "couch", (35, -15, -25), 0.12, size=((0.55, 0.75), (0.55, 0.75), (0.4, 0.48)),
         shape="box"),
    _kin("bench", "table", (-30, -25, -10), 0.06, size=((1.2, 1.6), (0.35, 0.45), (0.42, 0.48))),
    _kin("end table", "table", (15, 15, 5), 0.2, size=((0.55, 0.7), (0.5, 0.6), (0.55, 0.65))),
    _kin("dining table", "table", (-35, -10, 25), 0.03,
         size=((1.6, 2.0), (0.9, 1.0), (0.73, 0.77))),
    _kin("cushion", "pillow", (-40, -50, -20), 0.15),
    _kin("mattress", "bed", (20, 25, 40), 0.04, size=((0.9, 1.6), (1.9, 2.0), (0.15, 0.25)),
         shape="box"),
    _kin("storage bin", "box", (10, 30, 60), 0.12, size=((0.35, 0.6), (0.3, 0.45), (0.25, 0.4))),
    _kin("suitcase", "cabinet", (-60, -60, -20), 0.12,
         size=((0.45, 0.55), (0.25, 0.3), (0.65, 0.75))),
    _kin("trash bin", "trash can", (30, 40, -10), 0.25),
    _kin("bag", "box", (-30, -30, -10), 0.12, size=((0.3, 0.45), (0.2, 0.3), (0.25, 0.4))),
    _kin("fan", "lamp", (5, 10, 30), 0.15, size=((0.3, 0.4), (0.3, 0.4), (0.55, 0.7))),
    _kin("microwave", "box", (15, 25, 40), 0.2, size=((0.45, 0.55), (0.33, 0.4), (0.26, 0.32)),
         place="top"),
    _kin("oven", "cabinet", (-50, -35, -15), 0.1, size=((0.55, 0.6), (0.55, 0.65), (0.85, 0.9))),
    _own("piano", 0.02), _own("laundry basket", 0.1),
    # tail: relatives of head classes, one with a signature
    _kin("poster", "picture", (20, 20, 60), 0.02, size=((0.5, 0.8), (0.06, 0.08), (0.7, 1.0))),
    _kin("calendar", "picture", (80, 90, 90), 0.02, size=((0.4, 0.5), (0.08, 0.1), (0.5, 0.6))),
    _kin("clock", "picture", (60, 70, 80), 0.02, size=((0.45, 0.55), (0.1, 0.12), (0.45, 0.55)),
         elevation=(1.8, 2.0)),
    _kin("vent", "window", (20, 10, -15), 0.02, size=((0.4, 0.6), (0.08, 0.1), (0.25, 0.3)),
         elevation=(2.0, 2.2)),
    _kin("speaker", "cabinet", (-60, -60, -50), 0.01,
         size=((0.25, 0.3), (0.2, 0.25), (0.4, 0.5))),
    _kin("bucket", "trash can", (5, -10, 20), 0.02, size=((0.3, 0.4), (0.0, 0.0), (0.3, 0.4))),
    _kin("water bottle", "trash can", (30, 40, 70), 0.02,
         size=((0.25, 0.3), (0.0, 0.0), (0.45, 0.55)), shape="bottle"),
    _kin("toaster", "box", (30, 40, 70), 0.02, size=((0.35, 0.4), (0.25, 0.3), (0.25, 0.3)),
         place="top"),
    _kin("tissue box", "box", (60, -10, 40), 0.02, size=((0.3, 0.35), (0.2, 0.25), (0.15, 0.2)),
         place="top"),
    _kin("tray", "pillow", (-60, -80, -80), 0.02, size=((0.5, 0.6), (0.35, 0.45), (0.08, 0.1))),
    _kin("hat", "pillow", (-50, -30, -10), 0.02, size=((0.35, 0.4), (0.0, 0.0), (0.16, 0.2)),
         shape="cylinder"),
    _kin("bowl", "lamp", (-40, -10, 40), 0.02, size=((0.35, 0.4), (0.0, 0.0), (0.15, 0.2)),
         shape="bowl"),
    _kin("fire extinguisher", "trash can", (40, -30, -30), 0.01,
         size=((0.24, 0.28), (0.0, 0.0), (0.75, 0.85))),
    _kin("guitar", "table", (-20, -25, -10), 0.005, size=((0.45, 0.5), (0.14, 0.16), (1.1, 1.2)),
         shape="guitar"),
    _own("ball", 0.005),
)
# fmt: on
CLASS_SETS = {"catalogue": CATALOGUE, "fine_grained": FINE_GRAINED}


def _by_group(classes: tuple[SynthClass, ...] = CATALOGUE) -> dict[str, list[SynthClass]]:
    return {g: [c for c in classes if c.group == g] for g in ("head", "common", "tail")}


def max_classes(classes: tuple[SynthClass, ...] = CATALOGUE) -> int:
    """The most classes of a class set that still split into thirds (the smaller of its common
    and tail groups bounds it)."""
    by_group = _by_group(classes)
    return 3 * min(len(by_group["common"]), len(by_group["tail"]))


MAX_CLASSES = max_classes()


def select_classes(
    count: int, classes: tuple[SynthClass, ...] = CATALOGUE
) -> tuple[SynthClass, ...]:
    """The first ``count`` classes of a class set taken in thirds from head, common and tail
    (head takes the remainder), always with wall and floor; the same ``count`` gives the same
    classes."""
    if not 5 <= count <= max_classes(classes):
        raise ValueError(f"--classes must be between 5 and {max_classes(classes)}, got {count}")
    by_group, third = _by_group(classes), count // 3
    chosen = by_group["head"][: count - 2 * third] + by_group["common"][:third]
    chosen += by_group["tail"][:third]
    return tuple(c for c in classes if c in chosen)


def balanced(classes: tuple[SynthClass, ...]) -> tuple[SynthClass, ...]:
    """The same classes, every object class equally frequent: each at the mean of their rates
    (so a room holds as many objects as before); walls, floor and ceiling are unchanged."""
    objects = [c for c in classes if c.name not in STRUCTURE]
    rate = sum(c.rate for c in objects) / len(objects)
    return tuple(c if c.name in STRUCTURE else replace(c, rate=rate) for c in classes)


def label_table_text() -> str:
    """A ``scannetv2-labels.combined.tsv`` for every class the generator knows, with the real
    table's columns and CRLF line ends; several raw categories share an id as in the real one."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\r\n")
    writer.writerow(LABEL_TABLE_COLUMNS)
    for c in CATALOGUE + EXTRA:
        nyu40class = NYU40_NAMES[c.nyu40id - 1]
        for raw in (c.name, *c.aliases):
            row = {
                "id": c.id,
                "raw_category": raw,
                "category": c.category or c.name,
                "count": max(1, round(100 * c.rate)),
                "nyu40id": c.nyu40id,
                "nyuClass": c.name,
                "nyu40class": nyu40class,
            }
            writer.writerow([row.get(column, "") for column in LABEL_TABLE_COLUMNS])
    return out.getvalue()
