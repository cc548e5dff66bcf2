"""The center-collapse branch against a transcription of the authors' released 2D head
(GPaCo/Seg/mmseg/models/decode_heads/uper_head_ceco.py, dvlab-research/Parametric-Contrastive-
Learning at fe56535), its training branch of ``forward`` and the center term of ``losses``,
written from that code with plain torch ops in float64. The N voxels are the N x 1 positions of
one feature map, ignored ones (label 255) included, as the release's BatchNorm sees them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ceco3d.losses import CeCoLoss
from ceco3d.models.center_collapse import CenterCollapseHead, simplex_etf
from tests.test_center_collapse import IN_DIM, K, scene_labels

LAMBDA = 0.4  # the release's img_cls_weight
TRAIN_IMAGE_COUNTS = torch.tensor([5.0, 9.0, 2.0, 1.0, 3.0, 7.0, 4.0])  # the frequency file


def release_center_branch(head: CenterCollapseHead, features, labels):
    """``(logits + log prior, scene_label, loss_img_cls, reduce BatchNorm2d)`` as the release
    computes them (``smooth`` 1, ``etf`` true, dropout off)."""
    channels, n = features.shape[1], features.shape[0]
    output = features.T.reshape(1, channels, n, 1)  # the decoder's (B, C, H, W) feature map
    seg_label = torch.where(labels == -1, 255, labels).reshape(1, 1, n, 1)

    reduce = nn.Sequential(nn.Conv2d(channels, 128, kernel_size=1, padding=0, bias=False),
                           nn.BatchNorm2d(128)).double().train()  # fmt: skip
    gain = nn.Sequential(nn.Linear(128, 512), nn.ReLU(inplace=True)).double()
    # The release's img_cls is Sequential(Dropout2d(0.1), Linear): dropout is off here.
    img_cls = nn.Sequential(nn.Identity(), nn.Linear(512, K)).double()
    with torch.no_grad():
        reduce[0].weight.copy_(head.reduce[0].weight[:, :, None, None])
        reduce[1].weight.copy_(head.reduce[1].weight)
        reduce[1].bias.copy_(head.reduce[1].bias)
        gain[0].weight.copy_(head.gain[0].weight)
        gain[0].bias.copy_(head.gain[0].bias)
        etf = head.etf.double()
        img_cls[1].weight.copy_(etf / etf.norm(dim=-1, keepdim=True))
        img_cls[1].bias.zero_()
    weight = (TRAIN_IMAGE_COUNTS / TRAIN_IMAGE_COUNTS.sum()).double().view(1, K)

    # forward(), the `if self.training` branch
    h, w = seg_label.shape[2:]
    pixel_features = reduce(output)
    pixel_features = F.interpolate(pixel_features, size=(h, w), mode="bilinear",
                                   align_corners=True)  # fmt: skip
    pixel_features = pixel_features.permute(0, 2, 3, 1).contiguous()
    y = seg_label.squeeze(1)
    y_valid = y[y != 255].long()
    out_valid = pixel_features[y != 255, :]
    y_onehot = F.one_hot(y_valid, K).double()
    centers = y_onehot.T @ out_valid
    scene_label = torch.unique(y_valid)
    centers = centers[scene_label, :]
    cls_num = y_onehot.T.sum(dim=1)
    cls_num = cls_num[scene_label]
    centers = centers / cls_num.unsqueeze(1)
    img_x = gain(centers)
    f = F.normalize(img_x, dim=-1)
    logits_img = img_cls(f) * head.scale

    # losses(), the center ("img") term
    labels_img_t = torch.where(scene_label >= K, K, scene_label)
    img_onehot = F.one_hot(labels_img_t, num_classes=K + 1)[:, :-1].double()
    adjusted = logits_img + torch.log(weight + 1e-12)
    loss = -(img_onehot * F.log_softmax(adjusted, dim=1)).sum() / (img_onehot.sum() + 1e-12)
    return adjusted, scene_label, loss * LAMBDA, reduce[1]


def release_inputs():
    """A fifth of the voxels ignored, distributed unlike the labelled ones (other mean and
    scale), so statistics over labelled voxels only would differ from those over all."""
    prior = TRAIN_IMAGE_COUNTS / TRAIN_IMAGE_COUNTS.sum()
    head = CenterCollapseHead(IN_DIM, K, prior=prior, dropout=0.0, seed=3).double().train()
    # The head stores W* and log(prior + 1e-12) in float32; the float64 comparison wants both in
    # float64 (rows of unit norm to 1e-16, which the release's renormalisation then keeps).
    head.etf = simplex_etf(K, head.etf.shape[1], seed=3)
    head.log_prior = torch.log(prior.double() + 1e-12)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():  # a BatchNorm affine other than the identity
        head.reduce[1].weight.uniform_(0.5, 1.5, generator=generator)
        head.reduce[1].bias.normal_(0.0, 0.3, generator=generator)
    labels = scene_labels(100)
    features = torch.randn(len(labels), IN_DIM, dtype=torch.float64, generator=generator)
    ignored = labels == -1
    features[ignored] = features[ignored] * 3.0 + 4.0
    return head, features, labels


def ceco_center_term(head, features, labels):
    """The 3D branch and CeCoLoss's weighted center term (the per-voxel CE is left out: the
    segmentation logits are constants here)."""
    logits, classes = head(features, labels)
    outputs = {"logits": torch.zeros(len(labels), K, dtype=torch.float64),
               "center_logits": logits, "center_classes": classes}  # fmt: skip
    return logits, classes, LAMBDA * CeCoLoss(LAMBDA)(outputs, labels)["center"]


def test_center_branch_equals_the_release_transcription():
    head, features, labels = release_inputs()
    assert (labels == -1).sum() == len(labels) // 5

    ours = features.clone().requires_grad_()
    logits, classes, loss = ceco_center_term(head, ours, labels)
    (grad,) = torch.autograd.grad(loss, ours)

    theirs = features.clone().requires_grad_()
    ref_logits, ref_classes, ref_loss, ref_norm = release_center_branch(head, theirs, labels)
    (ref_grad,) = torch.autograd.grad(ref_loss, theirs)

    assert classes.tolist() == ref_classes.tolist() == [1, 2, 3, 4, 5]
    torch.testing.assert_close(logits, ref_logits, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)  # every voxel, ignored too
    assert (ref_grad[labels == -1].abs().sum(1) > 0).all()
    norm = head.reduce[1]
    torch.testing.assert_close(norm.running_mean, ref_norm.running_mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(norm.running_var, ref_norm.running_var, rtol=1e-10, atol=1e-12)
