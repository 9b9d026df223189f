//! The sub-network config parser (`SubnetConfig::from_json`, OFA's JSON dict): any bytes give a
//! valid config or a typed error; a valid config survives its id and its JSON, and its shapes and
//! cost compute without overflow.

#![no_main]

use dynofa_core::{SubnetConfig, Supernet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for net in [Supernet::W1_0, Supernet::W1_2] {
        let Ok(cfg) = SubnetConfig::from_json(data, &net) else { continue };
        assert_eq!(cfg.validate(&net), Ok(()));
        assert_eq!(SubnetConfig::from_id(cfg.id()), cfg.canonical());
        assert_eq!(cfg.id().to_string().parse(), Ok(cfg.id()));
        let mut buf = [0u8; 512];
        let n = cfg.to_json(&mut buf).expect("a config fits 512 bytes");
        assert_eq!(SubnetConfig::from_json(&buf[..n], &net), Ok(cfg));
        let cost = net.cost(&cfg);
        assert!(cost.macs > 0 && cost.params > 0);
        assert!(net.blocks(&cfg).count() >= 10);
    }
});
