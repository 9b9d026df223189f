//! Names, shapes and roles of the tensors in OFA MobileNetV3's state dict (`ofa` 0.1.0's
//! `OFAMobileNetV3.state_dict()`, 475 tensors for w1.2). The loader checks files against this list
//! and the seeded generator fills it, so both always agree on the layout.

use dynofa_core::Supernet;
use dynofa_core::arch::{NUM_BLOCKS, NUM_CLASSES};

/// Number of BN layers: `first_conv`, `blocks.0` (2), three per elastic block, `final_expand_layer`.
pub const NUM_BN: usize = 3 + 3 * NUM_BLOCKS + 1;

/// Index of `first_conv.bn` among the BN layers.
pub const BN_STEM: usize = 0;
/// Index of `blocks.0.conv.depth_conv.bn`.
pub const BN_FIRST_DW: usize = 1;
/// Index of `blocks.0.conv.point_linear.bn`.
pub const BN_FIRST_PL: usize = 2;
/// Index of `final_expand_layer.bn`.
pub const BN_FINAL: usize = NUM_BN - 1;

/// The three BN layers of an elastic block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockPart {
    /// `inverted_bottleneck` (the 1x1 expand).
    Expand = 0,
    /// `depth_conv`.
    Depthwise = 1,
    /// `point_linear` (the 1x1 projection).
    Project = 2,
}

/// Index of a BN layer of elastic block `block` (1..=20).
pub const fn bn_block(block: usize, part: BlockPart) -> usize {
    3 + 3 * (block - 1) + part as usize
}

/// Module name of BN layer `index` (the state-dict prefix of its tensors).
pub fn bn_name(index: usize) -> String {
    match index {
        BN_STEM => "first_conv.bn".into(),
        BN_FIRST_DW => "blocks.0.conv.depth_conv.bn".into(),
        BN_FIRST_PL => "blocks.0.conv.point_linear.bn".into(),
        BN_FINAL => "final_expand_layer.bn".into(),
        i => {
            let block = (i - 3) / 3 + 1;
            let part = ["inverted_bottleneck", "depth_conv", "point_linear"][(i - 3) % 3];
            format!("blocks.{block}.conv.{part}.bn.bn")
        }
    }
}

/// Channels of BN layer `index` in the supernet (the stored length).
pub fn bn_channels(net: &Supernet, index: usize) -> usize {
    match index {
        BN_STEM | BN_FIRST_DW => net.stem,
        BN_FIRST_PL => net.first_block,
        BN_FINAL => net.final_expand,
        i => {
            let block = (i - 3) / 3 + 1;
            match (i - 3) % 3 {
                2 => net.unit_out[Supernet::unit_of(block)],
                _ => net.block_mid_max(block),
            }
        }
    }
}

/// What a tensor is, which decides how the seeded generator fills it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Role {
    /// A convolution or linear weight; `fan_in` as the generator scales it, `head` for the layers
    /// after the last block.
    Weight { fan_in: usize, head: bool },
    /// An elastic block's 7x7 depthwise kernel.
    Depthwise7,
    /// A transform matrix (`7to5_matrix`, `5to3_matrix`).
    Transform,
    /// BN gamma; `damped` for the projection BN of residual blocks.
    BnWeight { damped: bool },
    /// BN beta, running mean, or a conv/linear bias.
    Offset,
    /// BN running variance.
    RunningVar,
    /// BN `num_batches_tracked` (int64 scalar, unused at inference).
    Tracked,
}

/// One state-dict tensor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: Role,
}

impl TensorSpec {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Whether elastic block `block` (or `blocks.0` for 0) has an identity shortcut in the supernet.
pub(crate) fn has_residual(net: &Supernet, block: usize) -> bool {
    if block == 0 {
        return net.stem == net.first_block;
    }
    Supernet::block_stride(block) == 1 && net.block_in(block) == net.unit_out[Supernet::unit_of(block)]
}

/// Every tensor of the state dict, in `state_dict()` order.
pub(crate) fn tensor_specs(net: &Supernet) -> Vec<TensorSpec> {
    let mut out = Vec::with_capacity(480);
    let mut push =
        |name: String, shape: &[usize], role: Role| out.push(TensorSpec { name, shape: shape.to_vec(), role });
    let weight = |fan_in: usize| Role::Weight { fan_in, head: false };
    let bn = |push: &mut dyn FnMut(String, &[usize], Role), index: usize, damped: bool| {
        let (name, c) = (bn_name(index), bn_channels(net, index));
        push(format!("{name}.weight"), &[c], Role::BnWeight { damped });
        push(format!("{name}.bias"), &[c], Role::Offset);
        push(format!("{name}.running_mean"), &[c], Role::Offset);
        push(format!("{name}.running_var"), &[c], Role::RunningVar);
        push(format!("{name}.num_batches_tracked"), &[], Role::Tracked);
    };
    let (c0, c1) = (net.stem, net.first_block);

    push("first_conv.conv.weight".into(), &[c0, 3, 3, 3], weight(27));
    bn(&mut push, BN_STEM, false);
    push("blocks.0.conv.depth_conv.conv.weight".into(), &[c0, 1, 3, 3], weight(9));
    bn(&mut push, BN_FIRST_DW, false);
    push("blocks.0.conv.point_linear.conv.weight".into(), &[c1, c0, 1, 1], weight(c0));
    bn(&mut push, BN_FIRST_PL, has_residual(net, 0));

    for b in 1..=NUM_BLOCKS {
        let (cin, mid, cout) = (net.block_in(b), net.block_mid_max(b), net.unit_out[Supernet::unit_of(b)]);
        let p = format!("blocks.{b}.conv");
        push(format!("{p}.inverted_bottleneck.conv.conv.weight"), &[mid, cin, 1, 1], weight(cin));
        bn(&mut push, bn_block(b, BlockPart::Expand), false);
        push(format!("{p}.depth_conv.conv.conv.weight"), &[mid, 1, 7, 7], Role::Depthwise7);
        push(format!("{p}.depth_conv.conv.7to5_matrix"), &[25, 25], Role::Transform);
        push(format!("{p}.depth_conv.conv.5to3_matrix"), &[9, 9], Role::Transform);
        bn(&mut push, bn_block(b, BlockPart::Depthwise), false);
        if Supernet::block_has_se(b) {
            let se = Supernet::se_mid(mid);
            push(format!("{p}.depth_conv.se.fc.reduce.weight"), &[se, mid, 1, 1], weight(mid));
            push(format!("{p}.depth_conv.se.fc.reduce.bias"), &[se], Role::Offset);
            push(format!("{p}.depth_conv.se.fc.expand.weight"), &[mid, se, 1, 1], weight(se));
            push(format!("{p}.depth_conv.se.fc.expand.bias"), &[mid], Role::Offset);
        }
        // The generator scales the projection for e = 4, the middle of the elastic range.
        push(format!("{p}.point_linear.conv.conv.weight"), &[cout, mid, 1, 1], weight(mid * 4 / 6));
        bn(&mut push, bn_block(b, BlockPart::Project), has_residual(net, b));
    }

    let (c5, cf, cm) = (net.unit_out[4], net.final_expand, net.feature_mix);
    let head = |fan_in| Role::Weight { fan_in, head: true };
    push("final_expand_layer.conv.weight".into(), &[cf, c5, 1, 1], head(c5));
    bn(&mut push, BN_FINAL, false);
    push("feature_mix_layer.conv.weight".into(), &[cm, cf, 1, 1], head(cf));
    push("classifier.linear.weight".into(), &[NUM_CLASSES, cm], head(cm));
    push("classifier.linear.bias".into(), &[NUM_CLASSES], Role::Offset);
    out
}

/// The name `ofa` uses for a key of an older checkpoint (`.mobile_inverted_conv.` became `.conv.`).
pub(crate) fn canonical_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains(".mobile_inverted_conv.") {
        name.replace(".mobile_inverted_conv.", ".conv.").into()
    } else {
        name.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w12_has_the_475_tensors_of_ofa() {
        let specs = tensor_specs(&Supernet::W1_2);
        assert_eq!(specs.len(), 475);
        let params: usize = specs.iter().filter(|s| s.role != Role::Tracked).map(TensorSpec::len).sum();
        // sum(v.numel()) over ofa 0.1.0's OFAMobileNetV3(width_mult=1.2).state_dict(), without
        // num_batches_tracked.
        assert_eq!(params, 10_766_584);
        let find = |n: &str| specs.iter().find(|s| s.name == n).unwrap().shape.clone();
        assert_eq!(find("blocks.5.conv.depth_conv.se.fc.reduce.weight"), [48, 192, 1, 1]);
        assert_eq!(find("blocks.5.conv.point_linear.conv.conv.weight"), [48, 192, 1, 1]);
        assert_eq!(find("feature_mix_layer.conv.weight"), [1536, 1152, 1, 1]);
        let names: std::collections::HashSet<_> = specs.iter().map(|s| &s.name).collect();
        assert_eq!(names.len(), specs.len(), "names are unique");
    }

    #[test]
    fn bn_names_and_channels() {
        let net = Supernet::W1_2;
        assert_eq!(bn_name(bn_block(5, BlockPart::Depthwise)), "blocks.5.conv.depth_conv.bn.bn");
        assert_eq!(bn_channels(&net, bn_block(5, BlockPart::Depthwise)), 192);
        assert_eq!(bn_channels(&net, bn_block(5, BlockPart::Project)), 48);
        assert_eq!(bn_name(BN_FINAL), "final_expand_layer.bn");
        assert_eq!(bn_block(20, BlockPart::Project), BN_FINAL - 1);
        assert!(has_residual(&net, 0) && has_residual(&net, 2) && !has_residual(&net, 13));
    }
}
