use dynofa_core::{SubnetConfig, Supernet};
use dynofa_kernels::gpu::{Arg, GpuImage, Kernel};
use dynofa_kernels::weights::SupernetWeights;
#[test]
fn stats() {
    let image = GpuImage::new(&SupernetWeights::seeded(Supernet::W1_2, 1));
    for (name, cfg) in [
        ("max", SubnetConfig::uniform(7, 6, 4, 224)),
        ("mid", SubnetConfig::uniform(5, 4, 3, 192)),
        ("min", SubnetConfig::uniform(3, 3, 2, 160)),
    ] {
        let plan = image.plan(&cfg, 132);
        let pw: f64 = plan.iter().filter_map(|l| l.model_us).sum();
        println!("== {name}: {} launches, pointwise model sum {pw:.1} us", plan.len());
        for l in &plan {
            let ints: Vec<i64> =
                l.args.iter().filter_map(|a| if let Arg::Int(v) = a { Some(*v as i64) } else { None }).collect();
            if matches!(l.kernel, Kernel::Pointwise | Kernel::PointwiseSmall) {
                println!(
                    "{:?} grid {:?} m k n kc {:?} model {:.2}",
                    l.kernel,
                    l.grid,
                    [ints[0], ints[1], ints[3], ints[5]],
                    l.model_us.unwrap()
                );
            }
        }
    }
}
