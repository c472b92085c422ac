import pytest
import torch

from explearn.datasets import MASK_TRANSFORMS, load, normalize_options, transform_masks
from explearn.errors import ConfigError


def canvas(*cells: tuple[int, int], size: int = 12) -> torch.Tensor:
    """A (1, 1, size, size) mask with the given pixels set."""
    m = torch.zeros(1, 1, size, size)
    for r, c in cells:
        m[0, 0, r, c] = 1
    return m


def block(r0: int, r1: int, c0: int, c1: int, size: int = 12) -> torch.Tensor:
    m = torch.zeros(1, 1, size, size)
    m[0, 0, r0:r1, c0:c1] = 1
    return m


L_SHAPE = block(2, 9, 2, 4) + block(7, 9, 4, 9)  # a vertical bar and a foot: rows 2-8, columns 2-8


@pytest.mark.parametrize("name", MASK_TRANSFORMS.names())
def test_every_transform_keeps_shape_and_range(name):
    gen = torch.Generator().manual_seed(0)
    binary = (torch.rand(5, 1, 16, 16, generator=gen) > 0.7).float()
    soft = torch.rand(5, 3, 16, 16, generator=gen)
    for mask in (binary, soft):
        out = transform_masks(mask, name, seed=1)
        assert out.shape == mask.shape
        assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_none_is_the_identity_and_transforms_are_deterministic_for_a_seed():
    mask = (torch.rand(6, 1, 16, 16) > 0.5).float()
    assert torch.equal(transform_masks(mask, "none"), mask)
    for name in ("shift", "partial", "wrong"):
        assert torch.equal(transform_masks(mask, name, seed=3), transform_masks(mask, name, seed=3))


def test_soft_blurs_edges_and_keeps_the_peak():
    mask = block(3, 9, 3, 9)
    out = transform_masks(mask, "soft", 1.0)
    assert float(out.max()) == pytest.approx(1.0)
    assert 0 < float(out[0, 0, 3, 3]) < 1  # a corner of the square is now grey
    assert 0 < float(out[0, 0, 2, 5]) < 0.5  # just outside the edge: a little mass
    assert float(out[0, 0, 6, 6]) > 0.9  # the middle stays nearly 1
    assert float(out[0, 0, 11, 0]) < 1e-3  # far away stays 0


def test_bbox_of_an_l_shape_is_its_rectangle():
    assert torch.equal(transform_masks(L_SHAPE, "bbox"), block(2, 9, 2, 9))


def test_hull_fills_the_l_shape_to_a_convex_region_and_keeps_a_convex_mask():
    hull = transform_masks(L_SHAPE, "hull")
    assert bool((hull >= L_SHAPE).all())  # contains the mask
    assert float(hull[0, 0, 5, 5]) == 1  # inside the triangle spanned by the bar and the foot
    assert float(hull[0, 0, 2, 8]) == 0  # the far corner of the bounding box is not in the hull
    square = block(3, 7, 3, 7)
    assert torch.equal(transform_masks(square, "hull"), square)


def test_ellipse_of_a_disk_is_the_disk():
    yy, xx = torch.meshgrid(torch.arange(24), torch.arange(24), indexing="ij")
    disk = (((yy - 11.5) ** 2 + (xx - 11.5) ** 2) <= 7 ** 2).float()[None, None]
    out = transform_masks(disk, "ellipse")
    iou = float((out * disk).sum() / ((out + disk) > 0).sum())
    assert iou > 0.9


def test_pool_marks_whole_blocks():
    out = transform_masks(canvas((5, 6)), "pool", 4)
    assert torch.equal(out, block(4, 8, 4, 8))


def test_dilate_and_erode_by_their_radius():
    assert torch.equal(transform_masks(canvas((5, 5)), "dilate", 1), block(4, 7, 4, 7))
    assert torch.equal(transform_masks(block(3, 8, 3, 8), "erode", 1), block(4, 7, 4, 7))
    assert float(transform_masks(canvas((5, 5)), "erode", 1).sum()) == 0
    edge = block(0, 4, 0, 4)  # the image border does not erode a mask that touches it
    assert torch.equal(transform_masks(edge, "erode", 1), block(0, 3, 0, 3))


def test_shift_moves_each_mask_by_the_distance():
    mask = torch.cat([canvas((6, 6), size=14)] * 20)
    out = transform_masks(mask, "shift", 3, seed=0)
    moved = torch.nonzero(out[:, 0])  # (sample, row, col)
    assert len(moved) == 20  # every pixel stays in the image and stays one pixel
    dist = ((moved[:, 1:] - 6).float().norm(dim=1))
    assert bool(((dist - 3).abs() <= 0.75).all())  # whole-pixel rounding of a move by 3
    assert len({tuple(p) for p in moved[:, 1:].tolist()}) > 1  # directions differ between samples


def test_partial_removes_the_share_on_one_side():
    square = block(2, 10, 2, 10)  # 64 pixels
    out = transform_masks(square, "partial", 0.25, seed=0)
    assert float(out.sum()) == 48
    assert bool((out <= square).all())
    assert float(transform_masks(square, "partial", 0.0).sum()) == 64


def test_wrong_gives_every_sample_another_samples_mask():
    masks = torch.stack([canvas((i, i))[0] for i in range(8)])
    out = transform_masks(masks, "wrong", seed=0)
    owners = [int(torch.nonzero(out[i, 0])[0, 0]) for i in range(8)]
    assert sorted(owners) == list(range(8))  # a permutation of the masks
    assert all(owner != i for i, owner in enumerate(owners))  # nobody keeps their own


def test_random_place_keeps_each_masks_shape_and_area_at_a_random_position():
    masks = torch.cat([L_SHAPE, block(0, 12, 0, 12), torch.zeros(1, 1, 12, 12), block(3, 5, 6, 11)] * 4)
    out = transform_masks(masks, "random_place", seed=3)
    assert torch.equal(out.sum((1, 2, 3)), masks.sum((1, 2, 3)))  # each mask's area
    for before, after in zip(masks, out):
        if before.sum() == 0:
            continue
        rows, cols = torch.nonzero(before[0], as_tuple=True)
        rows2, cols2 = torch.nonzero(after[0], as_tuple=True)
        dr, dc = int(rows2.min() - rows.min()), int(cols2.min() - cols.min())
        assert torch.equal(rows2, rows + dr) and torch.equal(cols2, cols + dc)  # the same shape, moved
    assert len({tuple(torch.nonzero(m[0])[0].tolist()) for m in out[0::4]}) > 1  # L shapes land in several places
    assert torch.equal(out, transform_masks(masks, "random_place", seed=3))  # one seed, one placement


def test_placebos_move_wrong_reason_masks_with_the_same_draws():
    opts = {"n_train": 20, "n_val": 10, "n_test": 10, "spurious_rate": 0.9, "masks": "both"}
    plain = load("triangles", seed=0, **opts)
    for name in ("wrong", "random_place"):
        placebo = load("triangles", seed=0, mask_transform=name, **opts)
        assert torch.equal(placebo.train.wrong_mask, transform_masks(plain.train.wrong_mask, name, seed=0))
        assert torch.equal(placebo.train.mask, transform_masks(plain.train.mask, name, seed=0))
        assert torch.equal(placebo.train.wrong_mask.sum((1, 2, 3)).sort().values,
                           plain.train.wrong_mask.sum((1, 2, 3)).sort().values)
        assert torch.equal(placebo.val.wrong_mask, plain.val.wrong_mask)  # evaluation keeps the truth


def test_bad_parameters_and_names_fail_clearly():
    with pytest.raises(ConfigError, match="whole number of pixels"):
        transform_masks(canvas((1, 1)), "dilate", 1.5)
    with pytest.raises(ConfigError, match="share must lie in"):
        transform_masks(canvas((1, 1)), "partial", 2.0)
    with pytest.raises(ConfigError, match="did you mean 'dilate'"):
        transform_masks(canvas((1, 1)), "dilat")
    with pytest.raises(ConfigError, match="did you mean 'mask_transform'"):
        load("triangles", mask_transfrom="dilate")
    with pytest.raises(ConfigError, match="'random_place' takes no parameter, got 5"):
        normalize_options("triangles", {"mask_transform": "random_place", "mask_param": 5})  # would change run ids
    with pytest.raises(ConfigError, match="mask transform 'dilate': the radius must be a whole number"):
        normalize_options("triangles", {"mask_transform": "dilate", "mask_param": 0.5})  # before any training


def test_loading_with_a_transform_changes_only_the_training_masks():
    small = {"n_train": 20, "n_val": 10, "n_test": 10, "mask_fraction": 0.5}
    plain = load("triangles", seed=0, **small)
    grown = load("triangles", seed=0, mask_transform="dilate", mask_param=1, **small)
    has = plain.train.has_mask
    assert torch.equal(grown.train.has_mask, has)
    assert float(grown.train.mask[has].sum()) > float(plain.train.mask[has].sum())
    assert torch.equal(grown.train.mask[has], transform_masks(plain.train.mask[has], "dilate", 1))
    assert torch.equal(grown.val.mask, plain.val.mask) and torch.equal(grown.test.mask, plain.test.mask)
    assert torch.equal(grown.train.x, plain.train.x)
    assert grown.info["mask_transform"] == "dilate" and grown.info["mask_param"] == 1


def test_mask_options_enter_the_run_configuration_only_when_they_transform():
    assert "mask_transform" not in normalize_options("triangles", {"n_train": 100})
    assert normalize_options("triangles", {"mask_transform": "none"}) == normalize_options("triangles", {})
    opts = normalize_options("triangles", {"mask_transform": "pool"})
    assert opts["mask_transform"] == "pool" and opts["mask_param"] is None
