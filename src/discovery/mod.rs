//! Discovery of the user function: one `discover` call per process (retried
//! while the function is not up), validation of its `EntitySpec`, and
//! `reportError` when it is unusable.

mod backoff;
mod eventing;
pub mod routes;
pub mod spec;

use std::time::Duration;

use prost::Message;
use tracing::{debug, info, warn};

pub use backoff::Backoff;
pub use routes::{Consumer, EntityKind, EntityService, MethodRoute, Router, Shape};
pub use spec::Acceptance;

use crate::grpc::encode_prost;
use crate::proto::cloudstate::{EntitySpec, ProxyInfo, UserFunctionError};
use crate::userfn::{unary, Pool};

const DISCOVER: &str = "/cloudstate.EntityDiscovery/discover";
const REPORT_ERROR: &str = "/cloudstate.EntityDiscovery/reportError";
/// `reportError` is best effort; never let it hold up a shutdown.
const REPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// What Massa tells the function about itself.
pub fn proxy_info(accept: &Acceptance) -> ProxyInfo {
    ProxyInfo {
        protocol_major_version: 0,
        protocol_minor_version: 2,
        proxy_name: "massa".to_owned(),
        proxy_version: env!("CARGO_PKG_VERSION").to_owned(),
        supported_entity_types: accept.supported.iter().map(|k| k.protocol().to_owned()).collect(),
    }
}

/// Calls `discover` until the function answers, then validates the spec.
/// An invalid spec is reported to the function and returned as `Err`.
pub async fn discover(
    pool: &Pool,
    accept: &Acceptance,
    mut backoff: Backoff,
    max_message_size: usize,
) -> Result<Router, String> {
    let request = encode_prost(&proxy_info(accept));
    let uri = pool.endpoint(DISCOVER);
    let spec = loop {
        match unary(pool, &uri, request.clone(), max_message_size).await {
            Ok((_, body)) => match EntitySpec::decode(body) {
                Ok(spec) => break spec,
                Err(e) => {
                    let msg = format!("The EntitySpec from the user function could not be decoded: {e}");
                    report_error(pool, &msg).await;
                    return Err(msg);
                }
            },
            Err(status) => {
                let delay = backoff.next_delay(monoio::utils::thread_rng_n(1 << 16) as f64 / f64::from(1u32 << 16));
                warn!(target = %pool.target(), %status, retry_in = ?delay, "discovery failed; user function not ready");
                monoio::time::sleep(delay).await;
            }
        }
    };
    if let Some(info) = &spec.service_info {
        info!(
            service = %info.service_name,
            version = %info.service_version,
            runtime = %info.service_runtime,
            library = %format!("{} {}", info.support_library_name, info.support_library_version),
            protocol = %format!("{}.{}", info.protocol_major_version, info.protocol_minor_version),
            "user function discovered"
        );
    }
    match spec::validate(&spec, accept) {
        Ok(validated) => {
            validated.warnings.iter().for_each(|w| warn!("{w}"));
            for problem in &validated.http_problems {
                warn!("{problem}");
                report_error(pool, problem).await;
            }
            for s in validated.router.services() {
                info!(service = %s.name, entity_type = %s.protocol, persistence_id = %s.persistence_id, "serving");
            }
            Ok(validated.router)
        }
        Err(msg) => {
            report_error(pool, &msg).await;
            Err(msg)
        }
    }
}

/// Tells the function about an error (`reportError`); failures are ignored,
/// as some SDKs cannot even answer this call.
pub async fn report_error(pool: &Pool, message: &str) {
    let request = encode_prost(&UserFunctionError { message: message.to_owned() });
    let uri = pool.endpoint(REPORT_ERROR);
    let call = unary(pool, &uri, request, 1 << 20);
    match monoio::time::timeout(REPORT_TIMEOUT, call).await {
        Ok(Ok(_)) => debug!("reported error to user function"),
        Ok(Err(status)) => debug!(%status, "user function did not accept reportError"),
        Err(_) => debug!("reportError timed out"),
    }
}
