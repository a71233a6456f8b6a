//! The gateway alone, for benchmarks without building the whole `airlock` binary:
//! `gateway LISTEN DATA_DIR UPSTREAM...` (each UPSTREAM as for `airlock serve --upstream`).
//! Same code path as `airlock serve` (`Gateway::new` → `bind` → `serve`). A config file can be
//! given in `AIRLOCK_BENCH_CONFIG` (e.g. to compare with the audit log switched off).

use airlock_gateway::{ConfigSource, Gateway};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18800".into());
    let data_dir = args
        .next()
        .unwrap_or_else(|| "/tmp/airlock-bench-data".into());
    let source = ConfigSource {
        path: std::env::var_os("AIRLOCK_BENCH_CONFIG")
            .filter(|p| !p.is_empty())
            .map(Into::into),
        cli_upstreams: args.collect(),
        listen: Some(listen),
        data_dir: Some(data_dir.into()),
    };
    let gw = Gateway::new(source)?;
    let listener = gw.bind().await?;
    eprintln!("gateway on http://{}", listener.local_addr()?);
    gw.serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
