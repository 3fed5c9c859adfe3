"""The ImageNet class hierarchy and the label texts that use it."""

from __future__ import annotations

import numpy as np
import pytest

from search.encoders.imagenet import class_embeddings, imagenet_class_names
from search.encoders.imagenet_hierarchy import GROUPS, class_parents


def test_classes_know_their_parents():
    names = imagenet_class_names()
    parents = dict(zip(names, class_parents()))
    assert parents["Labrador Retriever"] == ("dog", "pet", "animal")
    assert parents["tabby cat"] == ("cat", "pet", "animal")
    assert {"fruit", "food"} <= set(parents["banana"])
    assert {"bus", "vehicle"} <= set(parents["school bus"])
    assert {"musical instrument", "guitar"} <= set(parents["acoustic guitar"])
    assert "pet" not in parents["grey wolf"] and "animal" in parents["grey wolf"]
    assert parents["abacus"] == ()  # not every class has a parent worth naming
    # every dog breed (the 118 WordNet-ordered classes 151-268) is a dog
    assert sum("dog" in p and "pet" in p for p in parents.values()) == 118


def test_every_group_names_valid_classes():
    assert all(spec.strip() and names for spec, names in GROUPS)
    with pytest.raises(ValueError, match="out of range"):
        class_parents(100)


@pytest.mark.models
def test_hierarchy_brings_a_breed_closer_to_its_parent_word(bundled_encoder):
    # every 8th class and the three named below (the whole table takes long on a busy machine)
    chosen = sorted(set(range(0, 1000, 8)) | {162, 398, 779})
    names = [imagenet_class_names()[i] for i in chosen]
    parents = [class_parents()[i] for i in chosen]
    flat = class_embeddings(names, bundled_encoder.encode_text)
    tree = class_embeddings(names, bundled_encoder.encode_text, 0.5, parents)
    np.testing.assert_allclose(np.linalg.norm(tree, axis=1), 1.0, atol=1e-5)
    pet, vehicle = bundled_encoder.encode_text(["a pet", "a vehicle"])
    beagle, bus, abacus = (names.index(n) for n in ("Beagle", "school bus", "abacus"))
    assert tree[beagle] @ pet > flat[beagle] @ pet + 0.05
    assert tree[bus] @ vehicle > flat[bus] @ vehicle + 0.05
    np.testing.assert_allclose(tree[abacus], flat[abacus], atol=1e-6)  # no parents: unchanged
    # "a pet" ranks dog breeds (and cats) above the rest once they know they are pets
    pets = np.array(["pet" in p for p in parents])
    top = np.argsort(-(tree @ pet))[: pets.sum()]
    assert pets[top].mean() > pets[np.argsort(-(flat @ pet))[: pets.sum()]].mean() + 0.1  # .65 -> .76
