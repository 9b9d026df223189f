//! OFA's per-op latency tables (`OpTables::load_dir`): any bytes as a `{r}_lookup_table.json`
//! give tables or an error naming the file; tables that load sum and compile for every uniform
//! sub-network without a panic (a missing op or resolution is an error, not a crash).

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use dynofa_core::{SubnetConfig, Supernet};
use dynofa_hal_jetson::design::latency::{OpTables, TABLE_SUFFIX};
use libfuzzer_sys::fuzz_target;

/// A folder of this process's own (in memory where /dev/shm exists: the loader reads a folder).
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm".into() } else { std::env::temp_dir() };
        let dir = base.join(format!("dynofa-fuzz-op-table-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    const R: u16 = 160;
    let file = dir().join(format!("{R}{TABLE_SUFFIX}"));
    std::fs::write(&file, data).expect("the scratch folder is writable");
    let tables = match OpTables::load_dir(dir()) {
        Ok(t) => t,
        Err(e) => {
            assert!(e.to_string().contains(&*file.to_string_lossy()), "{e}");
            return;
        }
    };
    let net = Supernet::W1_2;
    for (k, e, d) in [(3, 3, 2), (7, 6, 4), (5, 4, 3)] {
        let _ = tables.network(&net, &SubnetConfig::uniform(k, e, d, R));
    }
    if let Ok(model) = tables.compile(&net, &[R]) {
        let _ = model.range();
        let _ = model.latency(&SubnetConfig::uniform(7, 6, 4, R));
    }
});
