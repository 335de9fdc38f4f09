//! An [OpenFeature](https://openfeature.dev) provider: flags resolve through graycast's
//! local evaluation, from the client's cache, with no network on the hot path.
//!
//! A flag key is `"namespace/key"`. The evaluation context's targeting key is the subject
//! (the client id when absent, for instance-level gray), and its custom fields are the
//! attributes rules look at (numbers and booleans as their text).
//!
//! Turn on the SDK's `openfeature` feature and depend on `open-feature = "0.3"` (the 0.2
//! series has other traits and does not work with this provider).
//!
//! ```no_run
//! # async fn demo(client: graycast_client::Client) {
//! use open_feature::{EvaluationContext, OpenFeature};
//! let mut api = OpenFeature::singleton_mut().await;
//! api.set_provider(graycast_client::openfeature::GraycastProvider::new(client)).await;
//! let flags = api.create_client();
//! let ctx = EvaluationContext::default().with_targeting_key("user-42").with_custom_field("region", "eu-west");
//! let timeout = flags.get_int_value("payments/timeout_ms", Some(&ctx), None).await.unwrap_or(250);
//! # let _ = timeout; }
//! ```

use async_trait::async_trait;
use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode,
    EvaluationReason, EvaluationResult, StructValue, Value,
};

use crate::gray::{Context, Evaluation};
use crate::{Client, Reason};

/// Resolves OpenFeature flags `"namespace/key"` from a graycast [`Client`].
pub struct GraycastProvider {
    client: Client,
    metadata: ProviderMetadata,
}

impl GraycastProvider {
    /// A provider reading from `client`'s cache (subscribe it to the flags' namespaces).
    pub fn new(client: Client) -> GraycastProvider {
        GraycastProvider { client, metadata: ProviderMetadata::new("graycast") }
    }

    fn evaluate(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
    ) -> EvaluationResult<Evaluation> {
        let (namespace, key) = flag_key.split_once('/').ok_or_else(|| {
            error(
                EvaluationErrorCode::FlagNotFound,
                format!("flag key {flag_key:?} is not \"namespace/key\""),
            )
        })?;
        let mut ctx = Context { subject: context.targeting_key.clone(), ..Context::default() };
        for (name, value) in &context.custom_fields {
            let text = match value {
                EvaluationContextFieldValue::Bool(b) => b.to_string(),
                EvaluationContextFieldValue::Int(i) => i.to_string(),
                EvaluationContextFieldValue::Float(f) => f.to_string(),
                EvaluationContextFieldValue::String(s) => s.clone(),
                // Rules compare text; other kinds cannot match a rule.
                _ => continue,
            };
            ctx.attrs.insert(name.clone(), text);
        }
        self.client.evaluate(namespace, key, &ctx).ok_or_else(|| {
            error(
                EvaluationErrorCode::FlagNotFound,
                format!("{flag_key} is not in the graycast cache"),
            )
        })
    }

    fn resolve<T>(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
        convert: impl FnOnce(&serde_json::Value) -> Option<T>,
    ) -> EvaluationResult<ResolutionDetails<T>> {
        let evaluation = self.evaluate(flag_key, context)?;
        let value = convert(evaluation.value()).ok_or_else(|| {
            error(
                EvaluationErrorCode::TypeMismatch,
                format!("{flag_key} is {}", evaluation.value()),
            )
        })?;
        let reason = match evaluation.reason {
            Reason::NoGray => EvaluationReason::Static,
            Reason::Deny | Reason::Allow | Reason::RuleMismatch => EvaluationReason::TargetingMatch,
            Reason::Random | Reason::Percent => EvaluationReason::Split,
        };
        let mut details = ResolutionDetails::new(value);
        details.variant = Some(evaluation.variant.as_str().to_owned());
        details.reason = Some(reason);
        Ok(details)
    }
}

fn error(code: EvaluationErrorCode, message: String) -> EvaluationError {
    EvaluationError { code, message: Some(message) }
}

#[async_trait]
impl FeatureProvider for GraycastProvider {
    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    fn status(&self) -> ProviderStatus {
        let status = self.client.status();
        if status.synced {
            ProviderStatus::Ready
        } else if status.revision > 0 {
            ProviderStatus::STALE
        } else {
            ProviderStatus::NotReady
        }
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        self.resolve(flag_key, ctx, serde_json::Value::as_bool)
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        self.resolve(flag_key, ctx, serde_json::Value::as_i64)
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        self.resolve(flag_key, ctx, serde_json::Value::as_f64)
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        self.resolve(flag_key, ctx, |v| v.as_str().map(str::to_owned))
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        self.resolve(flag_key, ctx, |v| match Value::try_from(v) {
            Ok(Value::Struct(value)) => Some(value),
            _ => None,
        })
    }
}
