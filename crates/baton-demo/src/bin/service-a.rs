//! Runs Service A until Ctrl-C: `POST /orders` publishes order events.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let service = baton_demo::service_a::run(baton_demo::service_a::Config::from_env()?).await?;
    println!("service-a: POST http://{}/orders", service.local_addr());
    tokio::signal::ctrl_c().await?;
    service.shutdown().await
}
