//! Builds the `alerts` output batch.

use std::sync::Arc;

use sabot_guest::arrow::array::{Float64Builder, Int64Builder, StringBuilder};
use sabot_guest::prelude::*;

use crate::rules::{Finding, Transaction};

/// Columns of one alert record.
#[derive(Default)]
pub struct AlertBuilder {
    transaction_id: Int64Builder,
    account_number: StringBuilder,
    fraud_type: StringBuilder,
    severity: StringBuilder,
    amount: Float64Builder,
    timestamp_ms: Int64Builder,
    details: StringBuilder,
}

impl AlertBuilder {
    /// Adds one alert.
    pub fn push(&mut self, transaction_id: i64, tx: &Transaction, finding: &Finding) {
        self.transaction_id.append_value(transaction_id);
        self.account_number.append_value(tx.account);
        self.fraud_type.append_value(finding.fraud_type);
        self.severity.append_value(finding.severity);
        self.amount.append_value(tx.amount);
        self.timestamp_ms.append_value(tx.timestamp_ms);
        self.details.append_value(&finding.details);
    }

    /// The alerts as one batch.
    pub fn finish(mut self) -> Result<RecordBatch> {
        Ok(RecordBatch::try_from_iter([
            (
                "transaction_id",
                Arc::new(self.transaction_id.finish()) as ArrayRef,
            ),
            (
                "account_number",
                Arc::new(self.account_number.finish()) as ArrayRef,
            ),
            ("fraud_type", Arc::new(self.fraud_type.finish()) as ArrayRef),
            ("severity", Arc::new(self.severity.finish()) as ArrayRef),
            (
                "transaction_amount",
                Arc::new(self.amount.finish()) as ArrayRef,
            ),
            (
                "timestamp_ms",
                Arc::new(self.timestamp_ms.finish()) as ArrayRef,
            ),
            ("details", Arc::new(self.details.finish()) as ArrayRef),
        ])?)
    }
}
