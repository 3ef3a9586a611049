//! The HTML dashboard: not built yet in this slice (docs/ADMIN.md, "Not done yet"). The API
//! under `/api/v1` is complete for what the pages will show and post.

use axum::Router;

use super::AdminState;

pub fn routes() -> Router<AdminState> {
    Router::new()
}
