//! The helloworld client: `helloworld-client [TARGET] [NAME]`
//! (defaults `http://127.0.0.1:50051` and `world`).

use volley_examples::helloworld::{GreeterClient, HelloRequest};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let target = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:50051".to_owned());
    let name = args.next().unwrap_or_else(|| "world".to_owned());
    let client = GreeterClient::new(volley::Channel::new(&target)?);
    let reply = client.say_hello(HelloRequest { name }).await?;
    println!("{}", reply.into_inner().message);
    Ok(())
}
