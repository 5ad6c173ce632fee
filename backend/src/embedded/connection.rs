//! Where to connect: the loopback port chosen once and remembered, the `postgres` user's
//! password generated once (kept in a 0600 file), and the connection URL made of them.

use std::fs::{self, OpenOptions};
use std::io::Write;

use super::{EmbeddedPostgres, Result, io_err};

impl EmbeddedPostgres {
    /// The remembered port, chosen once (a free loopback port).
    pub fn port(&self) -> Result<u16> {
        let path = self.base.join("port");
        if let Ok(s) = fs::read_to_string(&path)
            && let Ok(p) = s.trim().parse::<u16>()
        {
            return Ok(p);
        }
        self.choose_port()
    }

    pub(super) fn choose_port(&self) -> Result<u16> {
        let path = self.base.join("port");
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io_err(&path))?;
        let port = l.local_addr().map_err(io_err(&path))?.port();
        drop(l);
        fs::write(&path, port.to_string()).map_err(io_err(&path))?;
        Ok(port)
    }

    pub(super) fn password(&self) -> Result<String> {
        let path = self.base.join("password");
        if let Ok(s) = fs::read_to_string(&path)
            && !s.trim().is_empty()
        {
            return Ok(s.trim().to_string());
        }
        let pw = hex::encode(rand::random::<[u8; 16]>());
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode_0600()
            .open(&path)
            .map_err(io_err(&path))?;
        f.write_all(pw.as_bytes()).map_err(io_err(&path))?;
        Ok(pw)
    }

    /// The connection URL of database `db` on the embedded server.
    pub fn url(&self, db: &str) -> Result<String> {
        Ok(format!(
            "postgres://postgres:{}@127.0.0.1:{}/{db}",
            self.password()?,
            self.port()?
        ))
    }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}
