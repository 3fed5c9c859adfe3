"""What each ImageNet class is a kind of ("a Labrador retriever is a dog is a pet"), so the
label bridge also answers queries for the broader word ("a pet", "a vehicle", "fruit").

A compact, hand-checked digest of the WordNet hypernyms of the 1,000 ImageNet-1k classes
(no WordNet ships offline). The animal classes 0-397 follow WordNet order, so contiguous index
ranges are whole subtrees (151-268 are the domestic dog breeds); the object classes 398-999 are
listed by index, picked from the classes whose WordNet gloss (``timm``'s
``imagenet_synset_to_definition.txt``) names the parent ("a vehicle that ...", "a brass musical
instrument ...") and checked by hand. Only parents a photo search would use are listed; a class
may have several, most specific first.
"""

from __future__ import annotations

HIERARCHY_VERSION = 1  # bump when GROUPS change: it keys the cached class table

# (class indices, parents): "a-b" is an inclusive range
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # animals (WordNet order: ranges are subtrees)
    ("0-6 389-397", ("fish", "animal")),
    ("2-4", ("shark",)),
    ("7-24 80-100 127-146", ("bird", "animal")),
    ("7-8", ("chicken", "farm animal")),
    ("97-100", ("waterfowl",)),
    ("87-90", ("parrot", "pet")),
    ("25-32", ("amphibian", "animal")),
    ("30-32", ("frog",)),
    ("33-68", ("reptile", "animal")),
    ("33-37", ("turtle",)),
    ("38-48", ("lizard",)),
    ("49-50", ("crocodile",)),
    ("52-68", ("snake",)),
    ("70-79", ("arachnid", "animal")),
    ("72-77", ("spider",)),
    ("101 385-386", ("elephant", "animal")),
    ("102-106", ("mammal", "animal")),
    ("107-126 327-329", ("sea creature", "animal")),
    ("118-121 125", ("crab",)),
    ("147-150", ("marine mammal", "animal")),
    ("147-148", ("whale",)),
    ("151-268", ("dog", "pet", "animal")),
    ("269-280", ("wild dog", "animal")),
    ("269-272", ("wolf",)),
    ("277-280", ("fox",)),
    ("276", ("hyena", "animal")),
    ("281-285", ("cat", "pet", "animal")),
    ("286-293", ("big cat", "wild cat", "animal")),
    ("294-297", ("bear", "animal")),
    ("298-299 334-337 356-364 387-388", ("mammal", "animal")),
    ("300-326", ("insect", "animal")),
    ("300-307", ("beetle",)),
    ("321-326", ("butterfly",)),
    ("330-332", ("rabbit", "pet", "animal")),
    ("333 338", ("rodent", "pet", "animal")),
    ("335", ("squirrel",)),
    ("339", ("horse", "farm animal", "animal")),
    ("340", ("horse", "animal")),
    ("341", ("pig", "farm animal", "animal")),
    ("342-344", ("hog", "animal")),
    ("345-347", ("cattle", "cow", "farm animal", "animal")),
    ("348", ("sheep", "farm animal", "animal")),
    ("349-353", ("antelope", "animal")),
    ("349", ("sheep",)),
    ("354-355", ("camel", "animal")),
    ("365-384", ("primate", "monkey", "animal")),
    ("365-369", ("ape",)),
    # vehicles
    ("407 436 468 511 609 627 656 661 751 817", ("car", "motor vehicle", "vehicle")),
    ("555 569 675 717 734 864 867", ("truck", "motor vehicle", "vehicle")),
    ("654 779 874", ("bus", "motor vehicle", "vehicle")),
    ("444 671 870 880", ("bicycle", "vehicle")),
    ("665 670", ("motorcycle", "motor vehicle", "vehicle")),
    ("408 573 575 586 595 802 847 866", ("motor vehicle", "vehicle")),
    ("603 612", ("cart", "vehicle")),
    ("466 547 565 705 820 829", ("train", "vehicle")),
    ("472 484 554 576 625 814 871 914", ("boat", "watercraft", "vehicle")),
    ("403 510 628 724 780 833 913", ("ship", "watercraft", "vehicle")),
    ("404 405 895", ("aircraft", "vehicle")),
    # music, sport, clothing
    ("401 402 420 486 513 541 546 558 566 577 579 593 594 641 642 683 684 687 699 776 822 875 "
     "881 889", ("musical instrument",)),
    ("402 546", ("guitar",)),
    ("579 881", ("piano",)),
    ("541 822", ("drum",)),
    ("429 430 522 574 722 768 805 852 890", ("ball", "sports equipment")),
    ("416 422 543 602 702 752 795", ("sports equipment",)),
    ("433 439 452 515 518 560 667 715 793 808", ("hat", "headwear", "clothing")),
    ("518 560", ("helmet",)),
    ("399 400 411 474 568 578 601 608 610 614 617 638 639 655 689 697 735 775 834 841 842 869 "
     "887 445", ("clothing",)),
    ("474 568 617 869", ("coat", "jacket")),
    ("578 601 655 689", ("dress",)),
    ("445 639 842", ("swimsuit", "bathing suit")),
    ("502 514 630 770 774", ("shoe", "footwear", "clothing")),
    # furniture, buildings, places
    ("423 453 495 526 532 559 564 703 765 831 857 894", ("furniture",)),
    ("423 559 765 857", ("chair", "seat")),
    ("703", ("bench", "seat")),
    ("526 532", ("table",)),
    ("431 516 520 564", ("bed", "furniture")),
    ("410 424 425 437 449 454 467 483 497 498 509 580 582 624 660 663 668 698 727 762 788 832 "
     "860 865 915", ("building",)),
    ("415 424 454 467 509 582 788 860 865", ("shop", "store")),
    ("483 698", ("castle", "palace")),
    ("497 663 668 832", ("church", "place of worship")),
    ("500 660 915", ("house", "dwelling", "building")),
    ("821 839 888", ("bridge",)),
    ("489 716 825 912", ("fence", "barrier")),
    ("672", ("tent", "camping")),
    ("843", ("playground",)),
    ("562", ("fountain",)),
    # food and drink
    ("948-957", ("fruit", "food")),
    ("936-947 987 998", ("vegetable", "food")),
    ("924-935 959 962-965", ("dish", "meal", "food")),
    ("927-929", ("dessert", "sweet")),
    ("930-932", ("bread", "baked goods")),
    ("933-934 963 965", ("fast food", "snack")),
    ("966-969", ("drink", "beverage")),
    # nature and people
    ("970 972 980", ("mountain", "landscape")),
    ("975 976 977 978", ("shore", "water", "landscape")),
    ("977 978", ("beach", "sand")),
    ("973 979 974", ("landscape", "nature")),
    ("984 985 986", ("flower", "plant")),
    ("947 991-997", ("mushroom", "fungus")),
    ("981 982 983", ("person",)),
    ("981", ("athlete", "sports player")),
    # things
    ("527 590 620 681", ("computer", "electronic device")),
    ("664 782 851", ("screen", "electronic device")),
    ("732 759", ("camera", "electronic device")),
    ("414 636 748 728 797", ("bag",)),
    ("440 720 737 898 907", ("bottle", "container")),
    ("850", ("toy", "stuffed animal")),
)


def _indices(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split():
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def class_parents(n_classes: int = 1000) -> list[tuple[str, ...]]:
    """Per ImageNet class index, its parents in ``GROUPS`` order, each once."""
    parents: list[list[str]] = [[] for _ in range(n_classes)]
    for spec, names in GROUPS:
        for i in _indices(spec):
            if not 0 <= i < n_classes:
                raise ValueError(f"class index {i} out of range in hierarchy group {spec!r}")
            parents[i].extend(n for n in names if n not in parents[i])
    return [tuple(p) for p in parents]
