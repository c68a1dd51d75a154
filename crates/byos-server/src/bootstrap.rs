//! `bootstrap.json`: written atomically (temp file + rename, mode 0600) once every listener is
//! bound; its presence means "ready". Removed again on a clean shutdown.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Serialize;

pub const FILE_NAME: &str = "bootstrap.json";

#[derive(Serialize)]
pub struct Admin {
    pub client_id: String,
    pub client_secret: String,
    pub object_id: String,
}

/// The contract's fields (`shared/reference/contract.md`); more may be added.
#[derive(Serialize)]
pub struct Bootstrap {
    pub version: u32,
    pub tenant_id: String,
    pub subscription_id: String,
    pub location: String,
    pub ca_file: String,
    pub authority: String,
    pub resource_manager: String,
    pub managed_identity_endpoint: String,
    /// byos extension: where the IMDS protocol is served (set `AZURE_POD_IDENTITY_AUTHORITY_HOST` to it).
    pub imds_endpoint: String,
    /// byos extension: the Blob service listener (accounts are `{blob_endpoint}/{name}/`).
    pub blob_endpoint: String,
    /// byos extension: the operator's control socket.
    pub control_socket: String,
    pub admin: Admin,
}

impl Drop for Admin {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.client_secret);
    }
}

pub fn write(data_dir: &Path, bootstrap: &Bootstrap) -> anyhow::Result<()> {
    let path = data_dir.join(FILE_NAME);
    let tmp = data_dir.join(format!(".{FILE_NAME}.tmp"));
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    let bytes = zeroize::Zeroizing::new(serde_json::to_vec_pretty(bootstrap)?);
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(())
}

pub fn remove(data_dir: &Path) {
    let _ = std::fs::remove_file(data_dir.join(FILE_NAME));
}
