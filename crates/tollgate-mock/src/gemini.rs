//! The gemini wire format — being written; until then its routes answer 404.

use http::{Response, StatusCode};

use crate::body::MockBody;
use crate::respond;
use crate::router::Req;
use crate::state::Shared;

pub(crate) async fn route(_shared: &Shared, req: &Req<'_>) -> Response<MockBody> {
    respond::error(
        StatusCode::NOT_FOUND,
        &format!("Invalid URL ({} {})", req.method, req.path),
        None,
        None,
    )
}
