//! The helloworld `Greeter`: replies `"Hello <name>"`.

use volley::{Request, Response, Status};

use crate::helloworld::{Greeter, HelloReply, HelloRequest};

/// Greets whoever asks; `who` tells which server answered.
#[derive(Debug, Default)]
pub struct MyGreeter {
    pub who: String,
}

impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let name = &request.get_ref().name;
        if name.is_empty() {
            return Err(Status::invalid_argument("name must not be empty"));
        }
        let message = if self.who.is_empty() {
            format!("Hello {name}")
        } else {
            format!("Hello {name}, from {}", self.who)
        };
        Ok(Response::new(HelloReply { message }))
    }
}
