//! In-process no-op reconcile, without process start-up or API negotiation. Two figures:
//! `resync_ms`, what `berth serve` pays on every resync of an applied commit (its config is
//! loaded once per commit: observe the Engine with two requests, then plan), and `load_ms`, the
//! same plus loading the config. Run by `hack/bench.sh` beside `docker compose up -d`:
//!
//!     BERTH_INSTANCE=bench cargo bench --bench noop_reconcile -- CONFIG_DIR [ITERATIONS]
//!
//! Prints one line: `resync_ms=… load_ms=… requests_per_reconcile=… mutating=…`. Exits
//! non-zero when the plan is not a no-op (the measurement would be meaningless).

use std::collections::BTreeMap;
use std::time::Instant;

use berth::docker::Engine;
use berth::plan::{PlanOptions, plan};

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let Some(dir) = args.next() else {
        eprintln!("usage: noop_reconcile CONFIG_DIR [ITERATIONS]");
        std::process::exit(64);
    };
    let iterations: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(200);
    let instance = std::env::var("BERTH_INSTANCE").unwrap_or_else(|_| "default".into());
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let engine = match Engine::connect().await {
            Ok(e) => e.with_instance(&instance),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        };
        let opts = PlanOptions {
            instance: instance.clone(),
            ..PlanOptions::default()
        };
        let load = || berth::compose::load_dir(dir.as_ref(), &env).expect("valid config");
        let loaded = load();
        let resync = || async {
            let observed = engine.observe(&loaded).await.expect("observe");
            plan(&loaded, &observed, &opts)
        };
        let once = || async {
            let desired = load();
            let observed = engine.observe(&desired).await.expect("observe");
            plan(&desired, &observed, &opts)
        };
        for _ in 0..10 {
            let p = once().await;
            if p.has_changes() || !p.errors.is_empty() {
                eprintln!("not a no-op:\n{}", berth::render::plan_text(&p));
                std::process::exit(1);
            }
        }
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0 / f64::from(iterations);
        let before = engine.requests();
        let start = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(resync().await);
        }
        let resync_ms = ms(start.elapsed());
        let used = engine.requests() - before;
        let start = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(once().await);
        }
        let load_ms = ms(start.elapsed());
        println!(
            "resync_ms={resync_ms:.3} load_ms={load_ms:.3} requests_per_reconcile={} mutating={}",
            used.total / u64::from(iterations),
            used.mutating
        );
    });
}
