//! Typed column access with errors that name the column.

use arrow::array::{Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::DataType;

use crate::{Error, Result};

/// Typed access to a batch's columns by name. A missing column or a column of another type
/// is a [`crate::ErrorKind::BadData`] error naming the column.
pub trait BatchExt {
    /// The `Int64` column `name`.
    fn i64_column(&self, name: &str) -> Result<&Int64Array>;
    /// The `Float64` column `name`.
    fn f64_column(&self, name: &str) -> Result<&Float64Array>;
    /// The `Utf8` column `name`.
    fn str_column(&self, name: &str) -> Result<&StringArray>;
    /// The `Boolean` column `name`.
    fn bool_column(&self, name: &str) -> Result<&BooleanArray>;
}

fn typed<'a, T: Array + 'static>(
    batch: &'a RecordBatch,
    name: &str,
    expected: DataType,
) -> Result<&'a T> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| Error::bad_data(format!("input has no column `{name}`")))?;
    column.as_any().downcast_ref::<T>().ok_or_else(|| {
        Error::bad_data(format!(
            "column `{name}` is {}, expected {expected}",
            column.data_type()
        ))
    })
}

impl BatchExt for RecordBatch {
    fn i64_column(&self, name: &str) -> Result<&Int64Array> {
        typed(self, name, DataType::Int64)
    }
    fn f64_column(&self, name: &str) -> Result<&Float64Array> {
        typed(self, name, DataType::Float64)
    }
    fn str_column(&self, name: &str) -> Result<&StringArray> {
        typed(self, name, DataType::Utf8)
    }
    fn bool_column(&self, name: &str) -> Result<&BooleanArray> {
        typed(self, name, DataType::Boolean)
    }
}
