"""Training scenes and simulated clicks made in batches with torch ops, on the GPU or the CPU.

The CPU composites of :mod:`training.data.composite` cost about 10 ms per 320² scene on one core, which
caps a GPU at a few hundred samples/s (on the CPU they are the faster ones: ``training.benchmarks.scenes``).
Here a whole batch is made at once on the training device from a
:class:`SceneBank` (the data pack's images as uint8 tensors on that device):

* photo scenes: a background crop (affine warp with ``grid_sample``), then 1..``max_objects`` cut-outs,
  each scaled over a large range (log-uniform, Simple Copy-Paste), rotated, flipped, colour-jittered and
  placed anywhere (partly outside too), blended hard, feathered or with a blurred alpha, sometimes with a
  drop shadow; later objects occlude earlier ones and the instance map keeps each visible part. Every
  pasted object is a distractor for the others, so "pasted" does not mean "target";
* MR scenes (SynthSeg-style): a slice's tissue and structure label maps warped, then either the real T1
  contrast (random gamma) or intensities drawn per tissue class and per structure (classes
  split and merged at random), a smooth multiplicative bias field and texture;
* the whole image then gets blur, down/up-sampling and noise at random, so that sharpness and noise do
  not tell pasted from background;
* the target is one visible object (sometimes two merged, or a whole tissue class / the brain on MR).

Clicks: :func:`initial_points` samples positives inside the target (weighted towards its interior by an
approximate distance transform) and negatives on the background near it, on other objects and anywhere;
:func:`add_correction_clicks` is the iterative-training rule (one click at the interior of the larger
error region) on the device. Coordinates and the points layout are :mod:`model.clicks`'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.threshold import DEFAULT_THRESHOLD
from training.morphology import dilate, erode

# MR tissue classes in SceneBank.mr_tissue
TISSUE_OUTSIDE, TISSUE_OTHER, TISSUE_GREY, TISSUE_WHITE = 0, 1, 2, 3


@dataclass(frozen=True)
class SceneConfig:
    """What a batch of scenes looks like; every probability is per scene (or per pasted object)."""

    size: int = 320  # scenes are size x size
    mr_fraction: float = 0.2  # share of MR scenes in a batch
    max_objects: int = (
        5  # pasted cut-outs per photo scene (the first always, the others with extra_object_prob)
    )
    extra_object_prob: float = 0.6
    object_scale: tuple[float, float] = (0.12, 1.1)  # longest side / scene side, log-uniform
    max_rotation: float = 30.0
    hard_blend_prob: float = 0.35  # else feathered (the warp's own soft edge) or blurred alpha
    blurred_blend_prob: float = 0.3
    shadow_prob: float = 0.25
    merge_prob: float = 0.1  # target = two merged objects
    min_target_fraction: float = 0.003  # a target covers at least this share of the scene
    synth_mr_prob: float = 0.6  # MR scene with drawn intensities (else real T1 contrast)
    lesion_prob: float = 0.0  # MR scene with a lesion-like blob of random contrast (its target in half)
    blob_fraction: float = 0.0  # share of blob scenes in a batch: homogeneous blobs on plain ground
    max_blobs: int = 16  # blobs per blob scene (3 at the least)
    blur_prob: float = 0.3
    resample_prob: float = 0.25
    noise_prob: float = 0.35
    jpeg_prob: float = 0.3  # whole-scene JPEG compression at a quality in jpeg_quality
    jpeg_quality: tuple[int, int] = (25, 90)
    gray_prob: float = 0.1


@dataclass
class SceneBank:
    """The images scenes are made of, as uint8 tensors on one device.

    ``objects`` (No, 4, So, So) RGBA cut-outs, each centred with its longest side filling the square;
    ``backgrounds`` (Nb, 3, Sb, Sb); ``mr_image`` / ``mr_tissue`` / ``mr_structures`` (Nm, 1, Sm, Sm)
    (T1 grey, tissue class, structure id 0 = none, 1.. connected parts), may be empty (Nm = 0).
    """

    objects: torch.Tensor
    backgrounds: torch.Tensor
    mr_image: torch.Tensor
    mr_tissue: torch.Tensor
    mr_structures: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.objects.device

    @property
    def max_structure(self) -> int:
        return int(self.mr_structures.max()) if self.mr_structures.numel() else 0


@dataclass
class SceneBatch:
    """``images`` (B, 3, S, S) float32 RGB in [0, 1]; ``targets`` (B, 1, S, S) float32 (1 = object);
    ``others`` (B, 1, S, S) bool: other objects' pixels (where negative clicks teach the most);
    ``valid`` (B,) bool: scenes with a usable target (the loss ignores the others);
    ``merged`` (B, 1, S, S) bool: the second object of a merged target (empty when the target is one
    object), so that the clicks can name both objects as a user would."""

    images: torch.Tensor
    targets: torch.Tensor
    others: torch.Tensor
    valid: torch.Tensor
    merged: torch.Tensor | None = None


# ---------------------------------------------------------------------------------------------- helpers


def _uniform(n: int, low: float, high: float, device: torch.device, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, device=device, generator=gen) * (high - low) + low


def _chance(n: int, p: float, device: torch.device, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, device=device, generator=gen) < p


def affine_theta(linear: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) ``grid_sample`` matrices mapping output coordinates p to ``linear @ (p - centre)``
    (normalised coordinates; ``linear`` (B, 2, 2), ``centre`` (B, 2) as (x, y))."""
    shift = -(linear @ centre.unsqueeze(-1))
    return torch.cat((linear, shift), dim=2)


def rotation(angle: torch.Tensor) -> torch.Tensor:
    """(B, 2, 2) rotation matrices of ``angle`` radians."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack((torch.stack((cos, -sin), -1), torch.stack((sin, cos), -1)), -2)


def warp(source: torch.Tensor, theta: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """``source`` (B, C, h, w) sampled at ``theta``'s grid into (B, C, size, size); zeros outside."""
    grid = F.affine_grid(theta.to(source.dtype), [source.shape[0], 1, size, size], align_corners=False)
    return F.grid_sample(source, grid, mode=mode, padding_mode="zeros", align_corners=False)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, max_sigma: float | None = None) -> torch.Tensor:
    """Blur each image of ``x`` (B, C, H, W) with its own ``sigma`` (B,) px; sigma <= 0.05 leaves it as is.
    Separable, reflect-padded, one grouped convolution per axis. ``max_sigma``: a bound on ``sigma`` known
    to the caller (sizes the kernel without reading ``sigma`` back from the device)."""
    if max_sigma is not None:
        top = max_sigma
    else:
        top = float(sigma.max()) if sigma.numel() else 0.0
    if top <= 0.05:
        return x
    batch, channels, height, width = x.shape
    radius = max(1, int(math.ceil(3 * top)))
    radius = min(radius, (min(height, width) - 1) // 2)
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    safe = sigma.clamp_min(0.05).view(-1, 1)
    kernel = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * safe**2))
    identity = (offsets == 0).to(torch.float32).expand_as(kernel)
    kernel = torch.where((sigma <= 0.05).view(-1, 1), identity, kernel)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(channels, 0).to(x.dtype)
    flat = x.reshape(1, batch * channels, height, width)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel.view(-1, 1, 2 * radius + 1, 1), groups=batch * channels)
    flat = F.conv2d(flat, kernel.view(-1, 1, 1, 2 * radius + 1), groups=batch * channels)
    return flat.view(batch, channels, height, width)


def approximate_distance(mask: torch.Tensor, reach: int = 24, scale: int = 2) -> torch.Tensor:
    """Approximate distance (px) of each pixel of ``mask`` (B, 1, H, W) bool to its outside, capped near
    ``reach``: the number of 3x3 erosions a pixel survives, counted at 1/``scale`` resolution (the border
    of the image counts as outside). Zero outside the mask."""
    small = mask.float()
    if scale > 1:
        small = F.avg_pool2d(small, scale, ceil_mode=True)
    small = (small > 0.5).float()
    total = torch.zeros_like(small)
    current = F.pad(small, (1, 1, 1, 1))
    for _ in range(max(1, reach // scale)):
        current = erode(current, 1)
        current[:, :, 0, :] = current[:, :, -1, :] = 0
        current[:, :, :, 0] = current[:, :, :, -1] = 0
        total = total + current[:, :, 1:-1, 1:-1]
    total = (total + 1) * scale
    if scale > 1:
        total = F.interpolate(total, size=mask.shape[2:], mode="nearest")
    return total * mask


# ------------------------------------------------------------------------------------------------ scenes


class SceneMaker:
    """Makes :class:`SceneBatch` es from a :class:`SceneBank` (all on the bank's device)."""

    def __init__(self, bank: SceneBank, config: SceneConfig = SceneConfig()) -> None:
        if bank.objects.shape[0] == 0 or bank.backgrounds.shape[0] == 0:
            raise ValueError("a scene bank needs at least one object and one background")
        self.bank = bank
        self.config = config
        self.max_structure = bank.max_structure  # read once: the bank does not change

    @property
    def device(self) -> torch.device:
        return self.bank.device

    def batch(self, size: int, gen: torch.Generator) -> SceneBatch:
        """``size`` scenes: photo scenes, then blob scenes (their share is ``blob_fraction``), then MR
        scenes (``mr_fraction``)."""
        has_mr = self.bank.mr_image.shape[0] > 0
        mr = int(round(size * self.config.mr_fraction)) if has_mr else 0
        blobs = min(int(round(size * self.config.blob_fraction)), size - mr)
        photos = size - mr - blobs
        parts = [self.photo_scenes(photos, gen)] if photos > 0 else []
        if blobs:
            parts.append(self.blob_scenes(blobs, gen))
        if mr:
            parts.append(self.mr_scenes(mr, gen))
        images = torch.cat([p[0] for p in parts])
        targets = torch.cat([p[1] for p in parts])
        others = torch.cat([p[2] for p in parts])
        merged = torch.cat([p[3] for p in parts])
        images = self.degrade(images, gen)
        area = targets.flatten(1).sum(1)
        valid = area >= self.config.min_target_fraction * self.config.size**2
        return SceneBatch(images.clamp_(0, 1), targets, others, valid, merged)

    # -- photo scenes --------------------------------------------------------------------------------

    def photo_scenes(
        self, count: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg, bank, dev, size = self.config, self.bank, self.device, self.config.size
        # background: a crop of 35-100 % of the side, anywhere, sometimes mirrored
        index = torch.randint(bank.backgrounds.shape[0], (count,), device=dev, generator=gen)
        side = _uniform(count, 0.35, 1.0, dev, gen)
        flip = torch.where(_chance(count, 0.5, dev, gen), -1.0, 1.0)
        linear = torch.zeros(count, 2, 2, device=dev)
        linear[:, 0, 0], linear[:, 1, 1] = side * flip, side
        shift = (torch.rand(count, 2, device=dev, generator=gen) * 2 - 1) * (1 - side).unsqueeze(1)
        theta = torch.cat((linear, shift.unsqueeze(2)), dim=2)
        image = warp(bank.backgrounds[index].float().div_(255), theta, size)

        instances = torch.zeros(count, 1, size, size, dtype=torch.int64, device=dev)
        for slot in range(cfg.max_objects):
            active = (
                torch.ones(count, dtype=torch.bool, device=dev)
                if slot == 0
                else _chance(count, cfg.extra_object_prob, dev, gen)
            )
            rgb, alpha, hard = self.placed_objects(count, gen)
            alpha = alpha * active.view(-1, 1, 1, 1)
            hard = hard & active.view(-1, 1, 1, 1)
            shadow = _chance(count, cfg.shadow_prob, dev, gen) & active
            if bool(shadow.any()):
                offset = torch.randint(-6, 7, (2,), device=dev, generator=gen).tolist()
                cast = gaussian_blur(
                    torch.roll(alpha, offset, dims=(2, 3)), _uniform(count, 2.0, 6.0, dev, gen), 6.0
                )
                strength = _uniform(count, 0.2, 0.55, dev, gen) * shadow
                image = image * (1 - strength.view(-1, 1, 1, 1) * cast)
            image = image * (1 - alpha) + rgb * alpha
            instances = torch.where(hard, slot + 1, instances)
        target, others, merged = self.pick_targets(instances, cfg.max_objects, gen, allow_merge=True)
        gray = _chance(count, cfg.gray_prob, dev, gen).view(-1, 1, 1, 1)
        image = torch.where(gray, image.mean(1, keepdim=True).expand_as(image), image)
        return image, target, others, merged

    def placed_objects(
        self, count: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``count`` cut-outs warped onto the scene: (rgb, blend alpha, hard mask) at scene size."""
        cfg, bank, dev, size = self.config, self.bank, self.device, self.config.size
        index = torch.randint(bank.objects.shape[0], (count,), device=dev, generator=gen)
        rgba = bank.objects[index].float().div_(255)
        # premultiplied colour, so that the warp's soft edge does not darken towards the zero padding
        rgba = torch.cat((jitter_colours(rgba[:, :3], gen) * rgba[:, 3:], rgba[:, 3:]), dim=1)
        low, high = (math.log(v) for v in cfg.object_scale)
        longest = torch.exp(_uniform(count, low, high, dev, gen))  # of the scene side
        angle = _uniform(count, -cfg.max_rotation, cfg.max_rotation, dev, gen) * (math.pi / 180)
        flip = torch.where(_chance(count, 0.5, dev, gen), -1.0, 1.0)
        linear = rotation(-angle) / longest.view(-1, 1, 1)
        linear[:, :, 0] = linear[:, :, 0] * flip.view(-1, 1)
        centre = torch.rand(count, 2, device=dev, generator=gen) * 1.8 - 0.9
        warped = warp(rgba, affine_theta(linear, centre), size)
        rgb, alpha = warped[:, :3], warped[:, 3:]
        hard = alpha > 0.5
        mode = torch.rand(count, device=dev, generator=gen)
        is_hard = (mode < cfg.hard_blend_prob).view(-1, 1, 1, 1)
        is_blurred = (mode >= 1 - cfg.blurred_blend_prob).view(-1, 1, 1, 1)
        blurred = gaussian_blur(alpha, _uniform(count, 0.5, 2.0, dev, gen), 2.0)
        blend = torch.where(is_hard, hard.float(), torch.where(is_blurred, blurred, alpha))
        rgb = rgb / alpha.clamp_min(1e-3)  # back from premultiplied
        return rgb.clamp_(0, 1), blend, hard

    def pick_targets(
        self, instances: torch.Tensor, max_id: int, gen: torch.Generator, allow_merge: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One visible instance per scene (sometimes two merged) -> (target float, other objects bool,
        the merged second object bool; empty where the target is one object)."""
        count, dev = instances.shape[0], instances.device
        areas = instance_areas(instances, max_id)[:, 1:]  # (B, max_id), id 0 dropped
        minimum = self.config.min_target_fraction * instances.shape[2] * instances.shape[3]
        eligible = (areas >= minimum).float()
        weights = eligible + (eligible.sum(1, keepdim=True) == 0).float() * (areas > 0).float() + 1e-9
        first = torch.multinomial(weights, 1, generator=gen) + 1  # (B, 1) ids
        target = instances == first.view(-1, 1, 1, 1)
        merged = torch.zeros_like(target)
        if allow_merge:
            merge = _chance(count, self.config.merge_prob, dev, gen) & (eligible.sum(1) >= 2)
            if bool(merge.any()):
                second_weights = eligible.clone()
                second_weights.scatter_(1, first - 1, 0.0)
                second = torch.multinomial(second_weights + 1e-9, 1, generator=gen) + 1
                merged = (instances == second.view(-1, 1, 1, 1)) & merge.view(-1, 1, 1, 1)
                target = target | merged
        others = (instances > 0) & ~target
        return target.float(), others, merged

    # -- blob scenes ---------------------------------------------------------------------------------

    def blob_scenes(
        self, count: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Homogeneous blobs on plain ground, as cells under a microscope or organs and lesions in a scan
        (objects the cut-outs hardly show): a smooth ground of one colour or grey level with a bias field,
        3..``max_blobs`` irregular blobs (:func:`lesion_blobs` with no region, semi-axes 2-12 % of the side),
        each of the scene's blob level (any contrast to the ground, darker or brighter, sometimes faint)
        with a little jitter of its own, fine texture, soft edges; later blobs cover earlier ones. The
        target is one visible blob, the others are negatives."""
        cfg, dev, size = self.config, self.device, self.config.size
        grey = _chance(count, 0.5, dev, gen).view(-1, 1, 1, 1)
        ground = torch.rand(count, 3, 1, 1, device=dev, generator=gen)
        ground = torch.where(grey, ground.mean(1, keepdim=True).expand_as(ground), ground)
        sign = torch.where(_chance(count, 0.5, dev, gen), -1.0, 1.0)
        contrast = _uniform(count, 0.06, 0.6, dev, gen) * sign
        hue = torch.rand(count, 3, 1, 1, device=dev, generator=gen) * 2 - 1
        hue = torch.where(grey, torch.ones_like(hue), hue)
        level = (ground + contrast.view(-1, 1, 1, 1) * hue).clamp(0, 1)
        image = ground.expand(-1, -1, size, size).clone()
        instances = torch.zeros(count, 1, size, size, dtype=torch.int64, device=dev)
        wanted = torch.randint(3, cfg.max_blobs + 1, (count,), device=dev, generator=gen)
        for slot in range(cfg.max_blobs):
            blob = lesion_blobs(None, gen, (0.02, 0.12), (count, size, size))
            blob &= (slot < wanted).view(-1, 1, 1, 1)
            own = (level + torch.randn(count, 3, 1, 1, device=dev, generator=gen) * 0.04).clamp(0, 1)
            own = torch.where(grey, own.mean(1, keepdim=True).expand_as(own), own)
            edge = gaussian_blur(blob.float(), _uniform(count, 0.3, 1.5, dev, gen), 1.5)
            image = image * (1 - edge) + own * edge
            instances = torch.where(blob, slot + 1, instances)
        texture = _uniform(count, 0.0, 0.05, dev, gen).view(-1, 1, 1, 1)
        grain = gaussian_blur(torch.randn(count, 1, size, size, device=dev, generator=gen),
                              _uniform(count, 0.5, 2.0, dev, gen), 2.0)  # fmt: skip
        image = (image + grain * texture) * bias_field(count, size, gen, dev)
        target, others, merged = self.pick_targets(instances, cfg.max_blobs, gen, allow_merge=False)
        return image.clamp(0, 1), target, others, merged

    # -- MR scenes -----------------------------------------------------------------------------------

    def mr_scenes(
        self, count: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg, bank, dev, size = self.config, self.bank, self.device, self.config.size
        index = torch.randint(bank.mr_image.shape[0], (count,), device=dev, generator=gen)
        zoom = torch.exp(_uniform(count, math.log(0.9), math.log(2.5), dev, gen))
        angle = _uniform(count, -15, 15, dev, gen) * (math.pi / 180)
        flip = torch.where(_chance(count, 0.5, dev, gen), -1.0, 1.0)
        linear = rotation(-angle) / zoom.view(-1, 1, 1)
        linear[:, :, 0] = linear[:, :, 0] * flip.view(-1, 1)
        centre = (torch.rand(count, 2, device=dev, generator=gen) * 2 - 1) * (1 - 1 / zoom).clamp_min(0).view(
            -1, 1
        )
        theta = affine_theta(linear, centre)
        t1 = warp(bank.mr_image[index].float().div_(255), theta, size)
        labels = torch.cat((bank.mr_tissue[index], bank.mr_structures[index]), dim=1).float()
        labels = warp(labels, theta, size, mode="nearest").long()
        tissue, structures = labels[:, :1], labels[:, 1:]

        synth = self.synthetic_contrast(tissue, structures, gen)
        gamma = torch.exp(_uniform(count, -0.5, 0.5, dev, gen)).view(-1, 1, 1, 1)
        real = t1.clamp_min(0) ** gamma
        use_synth = _chance(count, cfg.synth_mr_prob, dev, gen).view(-1, 1, 1, 1)
        grey = torch.where(use_synth, synth, real)
        lesions = torch.zeros_like(tissue, dtype=torch.bool)
        if cfg.lesion_prob > 0:
            wanted = _chance(count, cfg.lesion_prob, dev, gen).view(-1, 1, 1, 1)
            lesions = lesion_blobs(tissue > 0, gen) & wanted
            edge = gaussian_blur(lesions.float(), _uniform(count, 0.5, 2.0, dev, gen), 2.0)
            level = torch.rand(count, 1, 1, 1, device=dev, generator=gen)  # any contrast, darker or brighter
            grey = grey * (1 - edge) + level * edge
        grey = grey * bias_field(count, size, gen, dev)
        image = grey.clamp(0, 1).expand(-1, 3, -1, -1)

        # targets: a structure (80 %), a whole tissue class (10 %) or the brain (10 %); a lesion hides
        # what lies under it and is the target of half the scenes that have one
        max_id = max(self.max_structure, 1)
        target, others, merged = self.pick_targets(structures, max_id, gen, allow_merge=False)
        choice = torch.rand(count, device=dev, generator=gen)
        cls = torch.where(_chance(count, 0.5, dev, gen), TISSUE_GREY, TISSUE_WHITE).view(-1, 1, 1, 1)
        whole_class = (tissue == cls).float()
        brain = (tissue > 0).float()
        target = torch.where((choice < 0.1).view(-1, 1, 1, 1), whole_class, target)
        target = torch.where((choice > 0.9).view(-1, 1, 1, 1), brain, target)
        if cfg.lesion_prob > 0:
            has_lesion = lesions.flatten(1).any(1)
            on_lesion = (has_lesion & _chance(count, 0.5, dev, gen)).view(-1, 1, 1, 1)
            inside_brain = choice.view(-1, 1, 1, 1) > 0.9  # the brain target keeps its lesion
            kept = torch.where(inside_brain, target, target * ~lesions)
            target = torch.where(on_lesion, lesions.float(), kept)
            others = torch.where(on_lesion, (others | (structures > 0)) & ~lesions, others | lesions)
        others = others & (target < 0.5)
        return image, target, others, merged

    def synthetic_contrast(
        self, tissue: torch.Tensor, structures: torch.Tensor, gen: torch.Generator
    ) -> torch.Tensor:
        """SynthSeg-style grey image: a random mean per tissue class, per structure offsets (classes
        split) or none (merged), texture noise, then a light blur."""
        count, dev = tissue.shape[0], tissue.device
        means = torch.rand(count, 4, device=dev, generator=gen)
        means[:, TISSUE_OUTSIDE] *= 0.3
        grey = torch.gather(means, 1, tissue.flatten(1)).view_as(tissue).float()
        max_id = self.max_structure + 1
        split = _uniform(count, 0.0, 0.15, dev, gen) * _chance(count, 0.5, dev, gen)
        offsets = torch.randn(count, max_id, device=dev, generator=gen) * split.view(-1, 1)
        offsets[:, 0] = 0
        grey = grey + torch.gather(offsets, 1, structures.flatten(1)).view_as(grey)
        texture = _uniform(count, 0.0, 0.06, dev, gen).view(-1, 1, 1, 1)
        grey = grey + torch.randn(grey.shape, device=dev, generator=gen) * texture
        grey = gaussian_blur(grey, _uniform(count, 0.0, 1.2, dev, gen), 1.2)
        low = grey.flatten(1).amin(1).view(-1, 1, 1, 1)
        high = grey.flatten(1).amax(1).view(-1, 1, 1, 1)
        return (grey - low) / (high - low).clamp_min(1e-3)  # the full range, as a scanner's window

    # -- whole image ---------------------------------------------------------------------------------

    def degrade(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Blur, down/up-sampling and noise of whole scenes (photo and MR alike), each at random."""
        cfg, count, dev = self.config, images.shape[0], images.device
        sigma = _uniform(count, 0.3, 1.5, dev, gen) * _chance(count, cfg.blur_prob, dev, gen)
        images = gaussian_blur(images, sigma, 1.5)
        resample = _chance(count, cfg.resample_prob, dev, gen)
        if bool(resample.any()):
            factor = float(_uniform(1, 1.5, 3.0, dev, gen))
            small = F.interpolate(images, scale_factor=1 / factor, mode="bilinear", antialias=True)
            back = F.interpolate(small, size=images.shape[2:], mode="bilinear", align_corners=False)
            images = torch.where(resample.view(-1, 1, 1, 1), back, images)
        level = _uniform(count, 0.005, 0.04, dev, gen) * _chance(count, cfg.noise_prob, dev, gen)
        images = images + torch.randn(images.shape, device=dev, generator=gen) * level.view(-1, 1, 1, 1)
        compress = _chance(count, cfg.jpeg_prob, dev, gen)
        if bool(compress.any()):
            low, high = cfg.jpeg_quality
            quality = torch.randint(low, high + 1, (count,), device=dev, generator=gen)
            images = torch.where(compress.view(-1, 1, 1, 1), jpeg_compress(images, quality), images)
        return images


# JPEG (ITU-T T.81 Annex K) luminance and chrominance quantisation tables, quality 50
_JPEG_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61), (12, 12, 14, 19, 26, 58, 60, 55), (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62), (18, 22, 37, 56, 68, 109, 103, 77), (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101), (72, 92, 95, 98, 112, 100, 103, 99),
)  # fmt: skip
_JPEG_CHROMA = (
    (17, 18, 24, 47, 99, 99, 99, 99), (18, 21, 26, 66, 99, 99, 99, 99), (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99), *((99,) * 8,) * 4,
)  # fmt: skip


def _dct_matrix(device: torch.device) -> torch.Tensor:
    """The orthonormal 8-point DCT-II matrix (8, 8)."""
    k = torch.arange(8, device=device, dtype=torch.float32).view(-1, 1)
    n = torch.arange(8, device=device, dtype=torch.float32).view(1, -1)
    basis = torch.cos(math.pi * (2 * n + 1) * k / 16) * math.sqrt(2 / 8)
    basis[0] /= math.sqrt(2)
    return basis


def jpeg_quant_tables(quality: torch.Tensor) -> torch.Tensor:
    """(B, 3, 8, 8) quantisation steps (Y, Cb, Cr) of each quality 1..100 (libjpeg's scaling)."""
    q = quality.float().clamp(1, 100).view(-1, 1, 1, 1)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q)
    base = torch.tensor((_JPEG_LUMA, _JPEG_CHROMA, _JPEG_CHROMA), dtype=torch.float32, device=quality.device)
    return torch.floor((base.unsqueeze(0) * scale + 50) / 100).clamp(1, 255)


def jpeg_compress(images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """``images`` (B, 3, H, W) in [0, 1] after a JPEG round trip at ``quality`` (B,) (4:4:4, no entropy
    coding, which is lossless): YCbCr, 8x8 block DCT, quantisation, back. Sides are padded to whole blocks
    by edge replication."""
    count, _, height, width = images.shape
    pad_h, pad_w = (-height) % 8, (-width) % 8
    rgb = F.pad(images.float(), (0, pad_w, 0, pad_h), mode="replicate") * 255 - 128  # level shift
    dev = rgb.device
    to_ycc = torch.tensor(  # the chroma offsets of 128 cancel the level shift
        ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312)), device=dev
    )
    ycc = torch.einsum("ij,bjhw->bihw", to_ycc, rgb)
    rows, cols = ycc.shape[2] // 8, ycc.shape[3] // 8
    blocks = ycc.view(count, 3, rows, 8, cols, 8).permute(0, 1, 2, 4, 3, 5)  # (B, 3, r, c, 8, 8)
    dct = _dct_matrix(dev)
    steps = jpeg_quant_tables(quality).view(count, 3, 1, 1, 8, 8)
    coefficients = torch.round((dct @ blocks @ dct.T) / steps) * steps
    blocks = dct.T @ coefficients @ dct
    ycc = blocks.permute(0, 1, 2, 4, 3, 5).reshape(count, 3, rows * 8, cols * 8)
    from_ycc = torch.tensor(((1.0, 0.0, 1.402), (1.0, -0.344136, -0.714136), (1.0, 1.772, 0.0)), device=dev)
    rgb = torch.einsum("ij,bjhw->bihw", from_ycc, ycc) + 128
    return (torch.round(rgb.clamp(0, 255)) / 255)[:, :, :height, :width].to(images.dtype)


def instance_areas(instances: torch.Tensor, max_id: int) -> torch.Tensor:
    """(B, max_id + 1) pixel counts of each id 0..max_id in ``instances`` (B, 1, H, W) int."""
    count = instances.shape[0]
    ids = instances.flatten(1).clamp(0, max_id)
    offsets = torch.arange(count, device=instances.device).view(-1, 1) * (max_id + 1)
    return torch.bincount((ids + offsets).flatten(), minlength=count * (max_id + 1)).view(count, -1)


def jitter_colours(rgb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-image brightness, contrast, saturation and channel gains of ``rgb`` (B, 3, H, W) in [0, 1]."""
    count, dev = rgb.shape[0], rgb.device

    def factor(low: float, high: float) -> torch.Tensor:
        return _uniform(count, low, high, dev, gen).view(-1, 1, 1, 1)

    grey = (rgb * torch.tensor([0.299, 0.587, 0.114], device=dev).view(1, 3, 1, 1)).sum(1, keepdim=True)
    rgb = grey + (rgb - grey) * factor(0.6, 1.4)
    mean = grey.mean(dim=(2, 3), keepdim=True)
    rgb = mean + (rgb - mean) * factor(0.7, 1.3)
    rgb = rgb * factor(0.75, 1.25) * _uniform(count * 3, 0.92, 1.08, dev, gen).view(-1, 3, 1, 1)
    return rgb.clamp(0, 1)


def lesion_blobs(
    region: torch.Tensor | None,
    gen: torch.Generator,
    radius: tuple[float, float] = (0.03, 0.12),
    shape: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """(B, 1, S, S) bool: one lesion-like blob per scene inside ``region`` (B, 1, S, S) bool (the brain),
    SynthSeg's recipe for pathology: a random ellipse (semi-axes ``radius`` x S, any angle) centred on a
    pixel of the region, its outline made irregular by a smooth random field, cut to the region; empty
    where the region is. ``region`` None: anywhere in scenes of ``shape`` (B, H, W), centred uniformly."""
    if region is None:
        if shape is None:
            raise ValueError("lesion_blobs needs a region or a shape")
        count, height, width = shape
        dev = gen.device
        centre = torch.rand(count, 2, device=dev, generator=gen) * torch.tensor(
            [height - 1, width - 1], device=dev, dtype=torch.float32
        )
    else:
        count, _, height, width = region.shape
        dev = region.device
        centre = _sample_pixels(region.float(), 1, gen)[:, 0]  # (B, 2) (y, x); -1 where the region is empty
    side = max(height, width)
    axes = _uniform(2 * count, *radius, dev, gen).view(count, 2) * side
    angle = _uniform(count, 0.0, math.pi, dev, gen)
    ys = torch.arange(height, device=dev, dtype=torch.float32).view(1, -1, 1) - centre[:, 0].view(-1, 1, 1)
    xs = torch.arange(width, device=dev, dtype=torch.float32).view(1, 1, -1) - centre[:, 1].view(-1, 1, 1)
    cos, sin = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    u = (xs * cos + ys * sin) / axes[:, 0].view(-1, 1, 1)
    v = (ys * cos - xs * sin) / axes[:, 1].view(-1, 1, 1)
    wobble = F.interpolate(torch.rand((count, 1, 5, 5), device=dev, generator=gen), size=(height, width),
                           mode="bicubic", align_corners=False)  # fmt: skip
    inside = (u**2 + v**2).unsqueeze(1) < 0.6 + 0.8 * wobble
    if region is None:
        return inside
    return inside & region & (centre[:, 0] >= 0).view(-1, 1, 1, 1)


def bias_field(count: int, size: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """(B, 1, size, size) smooth multiplicative fields, exp of an upsampled 4x4 random grid."""
    strength = _uniform(count, 0.0, 0.35, device, gen).view(-1, 1, 1, 1)
    coarse = torch.randn(count, 1, 4, 4, device=device, generator=gen) * strength
    return torch.exp(F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True))


# ------------------------------------------------------------------------------------------------ clicks


def _sample_pixels(weights: torch.Tensor, count: int, gen: torch.Generator) -> torch.Tensor:
    """(B, count, 2) (y, x) pixel positions drawn with replacement from ``weights`` (B, 1, H, W) >= 0;
    rows of all-zero weights give (-1, -1)."""
    width = weights.shape[3]
    flat = weights.flatten(1).float()
    empty = flat.sum(1) <= 0
    flat = torch.where(empty.view(-1, 1), torch.ones_like(flat), flat)
    index = torch.multinomial(flat, count, replacement=True, generator=gen)
    points = torch.stack((index // width, index % width), dim=-1).float()
    return torch.where(empty.view(-1, 1, 1), torch.full_like(points, -1.0), points)


def initial_points(
    targets: torch.Tensor,
    others: torch.Tensor,
    num_points: int,
    gen: torch.Generator,
    max_positive: int = 8,
    max_negative: int = 8,
    gamma: float = 0.7,
    single_click_share: float = 0.0,
    merged: torch.Tensor | None = None,
) -> torch.Tensor:
    """The clicks a scene starts with, (B, 2 * num_points, 3) in :mod:`model.clicks`' layout.

    1 + Geometric(1 - gamma) positives (at most ``max_positive``) inside the target, drawn in proportion
    to distance², and Geometric negatives (at most ``max_negative``, none in 30 % of scenes) drawn from a
    band around the target, from other objects and from anywhere on the background. A
    ``single_click_share`` of the scenes starts from one positive click and nothing else, as a user does
    (SAM trains every mask from one prompt); 0 leaves the random stream as it was without the option.

    ``merged`` (B, 1, H, W) bool marks the second object of a target made of two: such a scene starts
    with at least one positive click on each object (as RITM's multi-mask sampler does), never from one
    click alone. A single click on one of two objects does not say the other is wanted; training it to
    take both teaches the network to spill into neighbours. ``None`` or all-empty leaves the stream as
    it was.
    """
    if max(max_positive, max_negative) + 3 > num_points:
        raise ValueError("num_points must leave room for the correction clicks")
    count, dev = targets.shape[0], targets.device
    inside = targets > 0.5
    depth = approximate_distance(inside)
    positives = _sample_pixels(depth**2, max_positive, gen)
    n_pos = torch.clamp(1 + _geometric(count, gamma, dev, gen), max=max_positive)

    band = dilate(inside.float(), 15) > 0.5
    negative_weights = (band & ~inside).float() * 3 + others.float() * 2 + (~inside).float() * 0.1
    negatives = _sample_pixels(negative_weights * (~inside), max_negative, gen)
    n_neg = torch.clamp(_geometric(count, gamma, dev, gen), max=max_negative)
    n_neg = torch.where(_chance(count, 0.3, dev, gen), torch.zeros_like(n_neg), n_neg)
    if single_click_share > 0:
        single = _chance(count, single_click_share, dev, gen)
        n_pos = torch.where(single, torch.ones_like(n_pos), n_pos)
        n_neg = torch.where(single, torch.zeros_like(n_neg), n_neg)
    if merged is not None and bool(merged.any()):
        two = merged.flatten(1).any(1)
        parts = (inside & ~merged, merged & inside)
        firsts = [_sample_pixels(depth**2 * part, 1, gen)[:, 0] for part in parts]  # (B, 2) each
        for slot, first in enumerate(firsts):
            use = (two & (first[:, 0] >= 0)).view(-1, 1)
            positives[:, slot] = torch.where(use, first, positives[:, slot])
        n_pos = torch.where(two, n_pos.clamp_min(2), n_pos)

    points = torch.full((count, 2 * num_points, 3), -1.0, device=dev)
    order = torch.arange(max(max_positive, max_negative), device=dev).view(1, -1)
    keep_pos = (order[:, :max_positive] < n_pos.view(-1, 1)) & (positives[..., 0] >= 0)
    keep_neg = (order[:, :max_negative] < n_neg.view(-1, 1)) & (negatives[..., 0] >= 0)
    points[:, :max_positive, :2] = torch.where(keep_pos.unsqueeze(-1), positives, -1.0)
    points[:, :max_positive, 2] = torch.where(keep_pos, order[:, :max_positive].float(), -1.0)
    rows = slice(num_points, num_points + max_negative)
    points[:, rows, :2] = torch.where(keep_neg.unsqueeze(-1), negatives, -1.0)
    points[:, rows, 2] = torch.where(keep_neg, (order[:, :max_negative] + max_positive).float(), -1.0)
    return points


def _geometric(count: int, gamma: float, device: torch.device, gen: torch.Generator) -> torch.Tensor:
    """Failures before the first success with success probability ``1 - gamma``."""
    u = torch.rand(count, device=device, generator=gen).clamp_min(1e-7)
    return torch.floor(torch.log(u) / math.log(gamma)).long()


def perturbed_previous_masks(
    targets: torch.Tensor, others: torch.Tensor, gen: torch.Generator, max_shift: float = 0.04
) -> torch.Tensor:
    """(B, 1, S, S) previous-mask probabilities that are the target with the errors of a real earlier
    prediction, whatever the network would itself predict at this scale: edges moved in or out by up to
    ``max_shift`` x S (a blurred target thresholded at 0.2..0.8, which also loses thin parts), in 40 % a
    neighbouring object's nearby part added (the people behind a clicked person), in 50 % smooth blobs of
    false object near the target, in 50 % holes inside it; blurred edges and a random confidence, like
    the sigmoid output of a network that is not sure yet.

    Trained with them (``gpu_job --perturbed-prev-share``), the network learns to keep what a good
    previous mask already has and change it where the clicks say: the predictor's ZoomIn shows the
    second click a crop at up to twice the scale of the first, where a network that re-segments from
    the image alone may lose the object its first click found.
    """
    count, _, height, width = targets.shape
    dev = targets.device
    side = max(height, width)
    truth = targets > 0.5
    top = max(1.0, max_shift * side / 2)  # the blur runs at half resolution (a smooth map anyway)
    sigma = _uniform(count, 0.5, top, dev, gen)
    level = _uniform(count, 0.2, 0.8, dev, gen).view(-1, 1, 1, 1)
    half = gaussian_blur(F.avg_pool2d(targets.float(), 2, ceil_mode=True), sigma, max_sigma=top)
    mask = F.interpolate(half, size=(height, width), mode="bilinear", align_corners=False) > level

    reach = max(2, round(0.06 * side))
    near = dilate(truth.float(), reach) > 0.5
    neighbour = others & near & _chance(count, 0.4, dev, gen).view(-1, 1, 1, 1)
    field = F.interpolate(torch.rand((count, 1, 6, 6), device=dev, generator=gen), size=(height, width),
                          mode="bicubic", align_corners=False)  # fmt: skip
    blobs = field > _uniform(count, 0.65, 0.9, dev, gen).view(-1, 1, 1, 1)
    spill = blobs & near & ~truth & _chance(count, 0.5, dev, gen).view(-1, 1, 1, 1)
    holes = blobs & truth & _chance(count, 0.5, dev, gen).view(-1, 1, 1, 1)
    mask = (mask | neighbour | spill) & ~holes
    soft = gaussian_blur(mask.float(), _uniform(count, 1.0, 4.0, dev, gen), max_sigma=4.0)
    # as unsure as the network's own maps: inside 0.55..0.95 (the shipped network's first masks have a
    # median of 0.59 inside), outside 0..0.1
    high = _uniform(count, 0.55, 0.95, dev, gen).view(-1, 1, 1, 1)
    low = _uniform(count, 0.0, 0.1, dev, gen).view(-1, 1, 1, 1)
    return (low + (high - low) * soft).clamp(0, 1)


def add_correction_clicks(
    probs: torch.Tensor,
    targets: torch.Tensor,
    points: torch.Tensor,
    click_index: int,
    gen: torch.Generator,
    threshold: float = DEFAULT_THRESHOLD,
) -> torch.Tensor:
    """One click per scene at the interior of its larger error region (the iterative-training rule of
    :func:`training.trainer.next_click_points`, on the device, with an approximate distance transform):
    positive where the prediction misses the target, negative where it spills over. The click is drawn
    among the pixels at least 70 % as deep as the deepest (users do not hit the exact centre). It goes
    into row ``N - click_index`` (positive) or ``2N - click_index`` (negative); scenes without an error
    keep their points. Returns a new tensor."""
    num_points = points.shape[1] // 2
    predicted = probs > threshold
    truth = targets > 0.5
    missed = approximate_distance(truth & ~predicted)
    spilled = approximate_distance(predicted & ~truth)
    deepest_missed = missed.flatten(1).amax(1)
    deepest_spilled = spilled.flatten(1).amax(1)
    positive = deepest_missed >= deepest_spilled
    depth = torch.where(positive.view(-1, 1, 1, 1), missed, spilled)
    deepest = torch.maximum(deepest_missed, deepest_spilled)
    near_deepest = (depth >= 0.7 * deepest.view(-1, 1, 1, 1)) & (depth > 0)
    where = _sample_pixels(near_deepest.float(), 1, gen)[:, 0]  # (B, 2)
    has_error = deepest > 0
    out = points.clone()
    rows = torch.where(positive, num_points - click_index, 2 * num_points - click_index)
    batch = torch.arange(points.shape[0], device=points.device)
    row_values = torch.cat((where, torch.full_like(where[:, :1], float(click_index))), dim=1)
    current = out[batch, rows]
    out[batch, rows] = torch.where(has_error.view(-1, 1), row_values, current)
    return out
