//! Runs Service B until Ctrl-C: processes order events.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let service = baton_demo::service_b::run(baton_demo::service_b::Config::from_env()?).await?;
    println!("service-b: processing orders");
    tokio::signal::ctrl_c().await?;
    service.shutdown().await
}
