//! The probes' writer: sends an update to one system and waits for its acknowledgement.

use anyhow::{bail, Result};
use bytes::BytesMut;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::resp::{parse_reply, resp};
use super::servers::Server;

/// Sends updates to one system: each returns once acknowledged.
pub(super) enum Publisher {
    Graycast { http: reqwest::Client, url: String },
    Etcd(Box<etcd_client::Client>),
    Redis { stream: TcpStream, buf: BytesMut },
}

impl Publisher {
    pub(super) async fn connect(server: &Server) -> Result<Publisher> {
        Publisher::connect_to(server.name, &server.address).await
    }

    pub(super) async fn connect_to(name: &str, address: &str) -> Result<Publisher> {
        Ok(match name {
            "graycast" => Publisher::Graycast {
                http: reqwest::Client::new(),
                url: format!("http://{address}/v1/configs/compare/flag"),
            },
            "etcd" => {
                Publisher::Etcd(Box::new(etcd_client::Client::connect([address], None).await?))
            }
            _ => {
                let stream = TcpStream::connect(address).await?;
                stream.set_nodelay(true)?;
                Publisher::Redis { stream, buf: BytesMut::new() }
            }
        })
    }

    pub(super) async fn send(&mut self, update: usize) -> Result<()> {
        match self {
            Publisher::Graycast { http, url } => {
                let response =
                    http.put(url.as_str()).json(&json!({"value": update})).send().await?;
                if !response.status().is_success() {
                    bail!("PUT {url}: {}", response.status());
                }
            }
            Publisher::Etcd(client) => {
                client.put("compare/flag", update.to_string(), None).await?;
            }
            Publisher::Redis { stream, buf } => {
                stream.write_all(&resp(&["PUBLISH", "compare", &update.to_string()])).await?;
                loop {
                    if buf.first() == Some(&b'-') && parse_reply(buf).is_some() {
                        bail!("redis refused PUBLISH");
                    }
                    if parse_reply(buf).is_some() {
                        break;
                    }
                    if stream.read_buf(buf).await? == 0 {
                        bail!("redis closed the connection");
                    }
                }
            }
        }
        Ok(())
    }
}
