//! Per-RPC metrics: every call counted by procedure and Connect code, and timed.

use std::time::Instant;

use connectrpc::interceptor::{UnaryRequest, UnaryResponse};
use connectrpc::{ConnectError, Interceptor, Next};

/// Counts and times every unary call that reached the Connect router.
pub struct RpcMetrics;

#[connectrpc::async_trait]
impl Interceptor for RpcMetrics {
    async fn intercept_unary(
        &self,
        request: UnaryRequest,
        next: Next<'_>,
    ) -> Result<UnaryResponse, ConnectError> {
        // The resolved method's static name: a client cannot invent label values.
        let procedure = request.ctx.spec().map_or("unknown", |spec| spec.procedure);
        let started = Instant::now();
        let result = next.run(request).await;
        let code = match &result {
            Ok(_) => "ok",
            Err(error) => error.code.as_str(),
        };
        metrics::counter!("coupon_rpc_requests_total", "procedure" => procedure, "code" => code)
            .increment(1);
        let elapsed = started.elapsed();
        metrics::histogram!("coupon_rpc_duration_seconds", "procedure" => procedure)
            .record(elapsed.as_secs_f64());
        tracing::trace!(procedure, ms = elapsed.as_secs_f64() * 1e3, "rpc answered");
        result
    }
}
