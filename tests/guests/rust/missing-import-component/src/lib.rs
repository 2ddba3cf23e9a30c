//! A wasi:http component that imports an interface no host provides
//! (`acme:missing/thing@1.0.0`, declared inline with `wit-bindgen`): Platform must refuse
//! it at upload with an error naming that import, not fail at its first request.

use std::io::Write as _;

use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

wit_bindgen::generate!({
    inline: "
        package acme:missing@1.0.0;

        interface thing {
            ping: func() -> u32;
        }

        world needs-thing {
            import thing;
        }
    ",
    world: "needs-thing",
});

wasi::http::proxy::export!(Component);

struct Component;

impl wasi::exports::http::incoming_handler::Guest for Component {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        // Uses the import, so the component really needs it.
        let n = acme::missing::thing::ping();
        let resp = OutgoingResponse::new(Fields::new());
        let Ok(body) = resp.body() else { return };
        ResponseOutparam::set(out, Ok(resp));
        if let Ok(mut stream) = body.write() {
            let _ = write!(stream, "thing says {n}");
            let _ = stream.flush();
        }
        let _ = OutgoingBody::finish(body, None);
    }
}
