//! Which PostgreSQL system a data directory belongs to: its `pg_controldata` system identifier.
//! What deletion (Wipe) and a joining replica check before touching a data directory.

use super::error::Failure;
use crate::exec::{Cmd, Executor};
use crate::render::Layout;

/// The system identifier of the PostgreSQL data directory in `layout`; None when it holds no
/// cluster (no `global/pg_control`).
pub async fn system_identifier(
    ex: &dyn Executor,
    layout: &Layout,
) -> Result<Option<String>, Failure> {
    let script =
        r#"[ -e "$2/global/pg_control" ] || { echo absent; exit 0; }; "$1/pg_controldata" -D "$2""#;
    let cmd = Cmd::script(script).args([&layout.bin_dir, &layout.data_dir]);
    let out = ex.run_ok(&cmd, "read pg_controldata").await?;
    let text = out.stdout_str();
    if text.trim() == "absent" {
        return Ok(None);
    }
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("Database system identifier:"))
        .map(|v| v.trim().to_string());
    id.map(Some).ok_or_else(|| {
        let why = "pg_controldata printed no system identifier";
        Failure::new(super::HostErrorKind::Other, why)
    })
}
