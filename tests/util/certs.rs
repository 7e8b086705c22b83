//! Certificates for the TLS tests, made with the openssl command line in a directory removed
//! with them: a CA, a server certificate for 127.0.0.1 and `observer.flowscope.test`, a client
//! certificate from the same CA, and another CA with a client certificate of its own (the
//! wrong one).

use std::{path::PathBuf, process::Command};

use super::TempDir;

pub struct Certs {
    dir: TempDir,
}

impl Certs {
    pub fn generate() -> Certs {
        let dir = TempDir::new("fs-certs");
        let certs = Certs { dir };
        certs.ca("ca");
        certs.ca("other-ca");
        certs.leaf(
            "server",
            "ca",
            "subjectAltName=IP:127.0.0.1,DNS:observer.flowscope.test\\nextendedKeyUsage=serverAuth",
        );
        certs.leaf("client", "ca", "extendedKeyUsage=clientAuth");
        certs.leaf("other-client", "other-ca", "extendedKeyUsage=clientAuth");
        certs
    }

    /// `NAME.pem` (a certificate) or `NAME.key`.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The path as a string, for command lines.
    pub fn arg(&self, file: &str) -> String {
        self.path(file).display().to_string()
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .current_dir(&*self.dir)
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ca(&self, name: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=flowscope test {name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ]);
    }

    fn leaf(&self, name: &str, ca: &str, extensions: &str) {
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        std::fs::write(
            self.dir.join(format!("{name}.ext")),
            extensions.replace("\\n", "\n"),
        )
        .expect("extension file");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ]);
    }
}
