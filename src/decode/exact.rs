//! Column decoders that keep every value exactly or refuse it: arrow-json's own truncate
//! `19.99` into an int64 column and round `19.999` into a decimal(10,2).

use std::sync::Arc;

use crate::columns::JSON_TEXT;

/// The decoders apisnap puts in place of arrow-json's: `json`-typed columns keep any value
/// as its JSON text, straight from arrow-json's tape (no value tree); `int64` and decimal
/// columns take a number only if they hold it exactly.
#[derive(Debug)]
pub struct ExactDecoders;

impl arrow_json::reader::DecoderFactory for ExactDecoders {
    fn make_default_decoder(
        &self,
        _ctx: &arrow_json::reader::DecoderContext,
        field: &arrow_schema::FieldRef,
        _is_nullable: bool,
    ) -> Result<Option<Box<dyn arrow_json::reader::ArrayDecoder>>, arrow_schema::ArrowError> {
        if field.metadata().contains_key(JSON_TEXT) {
            return Ok(Some(Box::new(JsonTextDecoder)));
        }
        // arrow-json reads `19.99` into an integer column as 19, into a decimal(10,1) as
        // 20.0, a time with nanoseconds into a microsecond column without them, and a date
        // with a time of day as the date: ours refuse all of them.
        Ok(match field.data_type() {
            arrow_schema::DataType::Int64 => Some(Box::new(ExactInt64)),
            arrow_schema::DataType::Decimal128(precision, scale) => Some(Box::new(ExactDecimal {
                data_type: field.data_type().clone(),
                precision: *precision,
                scale: *scale,
            })),
            arrow_schema::DataType::Timestamp(unit, tz) => Some(Box::new(ExactTimestamp {
                data_type: field.data_type().clone(),
                per_second: per_second(*unit),
                zone: match tz {
                    Some(tz) => Some(tz.parse()?),
                    None => None,
                },
            })),
            arrow_schema::DataType::Date32 => Some(Box::new(ExactDate)),
            _ => None,
        })
    }
}

/// Decodes an `int64` column exactly: a number with a fraction, or one past the range of
/// 64-bit integers, is an invalid value (for `schema.on_invalid` to decide), never rounded
/// or truncated. `100.0` and `1e3` are whole numbers, and are taken.
struct ExactInt64;

impl arrow_json::reader::ArrayDecoder for ExactInt64 {
    fn decode(
        &mut self,
        tape: &arrow_json::reader::Tape<'_>,
        pos: &[u32],
    ) -> Result<arrow_array::ArrayRef, arrow_schema::ArrowError> {
        use arrow_json::reader::TapeElement as T;
        use arrow_schema::ArrowError;
        let mut builder = arrow_array::builder::Int64Builder::with_capacity(pos.len());
        let inexact = |s: &str| {
            ArrowError::JsonError(format!(
                "{s} is not a whole number an int64 column can hold exactly (a fraction, or \
                 past ±9223372036854775807): declare the column as `decimal` or `float64`"
            ))
        };
        for p in pos {
            match tape.get(*p) {
                T::Null => builder.append_null(),
                T::Number(idx) | T::String(idx) => {
                    let s = tape.get_string(idx);
                    builder.append_value(exact_int(s).ok_or_else(|| inexact(s))?);
                }
                T::I32(v) => builder.append_value(v as i64),
                T::I64(_) => builder.append_value(tape_i64(tape, *p)?),
                _ => return Err(tape.error(*p, "an integer")),
            }
        }
        Ok(Arc::new(builder.finish()))
    }
}

/// Decodes a `decimal(precision, scale)` column exactly: a number with more digits after
/// the point than the scale keeps, or more in all than the precision, is an invalid value,
/// never rounded.
struct ExactDecimal {
    data_type: arrow_schema::DataType,
    precision: u8,
    scale: i8,
}

impl arrow_json::reader::ArrayDecoder for ExactDecimal {
    fn decode(
        &mut self,
        tape: &arrow_json::reader::Tape<'_>,
        pos: &[u32],
    ) -> Result<arrow_array::ArrayRef, arrow_schema::ArrowError> {
        use arrow_json::reader::TapeElement as T;
        let mut builder = arrow_array::builder::Decimal128Builder::with_capacity(pos.len())
            .with_data_type(self.data_type.clone());
        let (precision, scale) = (self.precision, self.scale);
        let inexact = |s: &str| {
            arrow_schema::ArrowError::JsonError(format!(
                "{s} does not fit decimal({precision},{scale}) exactly (more than {scale} \
                 digits after the point, or {precision} in all): declare a larger precision \
                 or scale"
            ))
        };
        let mut text;
        for p in pos {
            let value = match tape.get(*p) {
                T::Null => {
                    builder.append_null();
                    continue;
                }
                T::Number(idx) | T::String(idx) => tape.get_string(idx),
                T::I32(v) => {
                    text = v.to_string();
                    &text
                }
                T::I64(_) => {
                    text = tape_i64(tape, *p)?.to_string();
                    &text
                }
                _ => return Err(tape.error(*p, "a number")),
            };
            let scaled = exact_scaled(value, scale)
                .filter(|v| digits(*v) <= precision as u32)
                .ok_or_else(|| inexact(value))?;
            builder.append_value(scaled);
        }
        Ok(Arc::new(builder.finish()))
    }
}

/// The 64-bit integer the tape holds at `p` (its high half there, its low half next).
fn tape_i64(tape: &arrow_json::reader::Tape<'_>, p: u32) -> Result<i64, arrow_schema::ArrowError> {
    use arrow_json::reader::TapeElement as T;
    match (tape.get(p), tape.get(p + 1)) {
        (T::I64(high), T::I32(low)) => Ok(((high as i64) << 32) | (low as u32) as i64),
        _ => Err(tape.error(p, "i64")),
    }
}

/// Units of a timestamp column per second.
fn per_second(unit: arrow_schema::TimeUnit) -> i64 {
    match unit {
        arrow_schema::TimeUnit::Second => 1,
        arrow_schema::TimeUnit::Millisecond => 1_000,
        arrow_schema::TimeUnit::Microsecond => 1_000_000,
        arrow_schema::TimeUnit::Nanosecond => 1_000_000_000,
    }
}

/// Whether an ISO-8601 date-time text carries a UTC offset (`Z`, `+02:00`, `-0500`) after
/// its date.
pub(super) fn has_offset(text: &str) -> bool {
    text.get(10..)
        .is_some_and(|time| time.contains(['Z', 'z', '+']) || time.contains('-'))
}

/// Decodes a timestamp column exactly: a time with more precision than the column's unit
/// is invalid, never truncated; a column without a time zone (local times, as the source
/// wrote them) refuses a time with a UTC offset, which it could only shift. A column with a
/// zone reads times with an offset as the instant they name, and times without one in the
/// column's zone; numbers are counts of the unit since the epoch.
struct ExactTimestamp {
    data_type: arrow_schema::DataType,
    per_second: i64,
    zone: Option<arrow_array::timezone::Tz>,
}

impl arrow_json::reader::ArrayDecoder for ExactTimestamp {
    fn decode(
        &mut self,
        tape: &arrow_json::reader::Tape<'_>,
        pos: &[u32],
    ) -> Result<arrow_array::ArrayRef, arrow_schema::ArrowError> {
        use arrow_json::reader::TapeElement as T;
        use arrow_schema::ArrowError;
        let mut builder = arrow_array::builder::PrimitiveBuilder::<
            arrow_array::types::TimestampSecondType,
        >::with_capacity(pos.len());
        let unit = match self.per_second {
            1 => "second",
            1_000 => "millisecond",
            1_000_000 => "microsecond",
            _ => "nanosecond",
        };
        let invalid = |s: &str, why: &str| ArrowError::JsonError(format!("{s}: {why}"));
        for p in pos {
            let (seconds, nanos, text) = match tape.get(*p) {
                T::Null => {
                    builder.append_null();
                    continue;
                }
                T::String(idx) => {
                    let s = tape.get_string(idx);
                    let at = match &self.zone {
                        Some(zone) => {
                            arrow_cast::parse::string_to_datetime(zone, s).map(|t| t.naive_utc())
                        }
                        None if has_offset(s) => {
                            return Err(invalid(
                                s,
                                "a time with a UTC offset in a column of local times (no \
                                 `timezone`): declare the column with `timezone = \"UTC\"`",
                            ));
                        }
                        None => arrow_cast::parse::string_to_datetime(&chrono::Utc, s)
                            .map(|t| t.naive_utc()),
                    }
                    .map_err(|e| invalid(s, &e.to_string()))?;
                    let utc = at.and_utc();
                    (utc.timestamp(), utc.timestamp_subsec_nanos() as i64, s)
                }
                T::Number(idx) => {
                    let s = tape.get_string(idx);
                    let v = exact_int(s).ok_or_else(|| invalid(s, "not a whole number"))?;
                    builder.append_value(v);
                    continue;
                }
                T::I32(v) => {
                    builder.append_value(v as i64);
                    continue;
                }
                T::I64(_) => {
                    builder.append_value(tape_i64(tape, *p)?);
                    continue;
                }
                _ => return Err(tape.error(*p, "a timestamp")),
            };
            let per_unit = 1_000_000_000 / self.per_second;
            if nanos % per_unit != 0 {
                return Err(invalid(
                    text,
                    &format!(
                        "more precise than the column's unit ({unit}): declare the column with a \
                         finer `unit`"
                    ),
                ));
            }
            let value = seconds
                .checked_mul(self.per_second)
                .and_then(|v| v.checked_add(nanos / per_unit))
                .ok_or_else(|| invalid(text, &format!("out of range for {unit}s since 1970")))?;
            builder.append_value(value);
        }
        // Built as seconds, then given the column's own unit and zone (the same i64s).
        let array = builder.finish();
        let data = arrow_array::Array::into_data(array)
            .into_builder()
            .data_type(self.data_type.clone());
        Ok(arrow_array::make_array(data.build()?))
    }
}

/// Decodes a date column exactly: a date-time is taken only at midnight without an offset
/// (anything else would lose its time of day); numbers are days since 1970-01-01.
struct ExactDate;

impl arrow_json::reader::ArrayDecoder for ExactDate {
    fn decode(
        &mut self,
        tape: &arrow_json::reader::Tape<'_>,
        pos: &[u32],
    ) -> Result<arrow_array::ArrayRef, arrow_schema::ArrowError> {
        use arrow_json::reader::TapeElement as T;
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");
        let invalid = |s: &str| {
            arrow_schema::ArrowError::JsonError(format!(
                "{s} is not a date (YYYY-MM-DD) a date column can hold without losing a time \
                 of day: declare the column as `timestamp`"
            ))
        };
        let mut builder = arrow_array::builder::Date32Builder::with_capacity(pos.len());
        for p in pos {
            match tape.get(*p) {
                T::Null => builder.append_null(),
                T::String(idx) => {
                    let s = tape.get_string(idx);
                    let date = match chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                        Ok(date) => date,
                        Err(_) if !has_offset(s) => {
                            let at = arrow_cast::parse::string_to_datetime(&chrono::Utc, s)
                                .map_err(|_| invalid(s))?
                                .naive_utc();
                            if at.time() != chrono::NaiveTime::MIN {
                                return Err(invalid(s));
                            }
                            at.date()
                        }
                        Err(_) => return Err(invalid(s)),
                    };
                    let days = (date - epoch).num_days();
                    builder.append_value(i32::try_from(days).map_err(|_| invalid(s))?);
                }
                T::Number(idx) => {
                    let s = tape.get_string(idx);
                    let days = exact_int(s)
                        .and_then(|d| i32::try_from(d).ok())
                        .ok_or_else(|| invalid(s))?;
                    builder.append_value(days);
                }
                T::I32(v) => builder.append_value(v),
                _ => return Err(tape.error(*p, "a date")),
            }
        }
        Ok(Arc::new(builder.finish()))
    }
}

/// The number of decimal digits of `v` (0 for 0).
fn digits(v: i128) -> u32 {
    v.unsigned_abs().checked_ilog10().map_or(0, |d| d + 1)
}

/// `text` as an i64 if it is exactly one: digits, or a whole number written with a zero
/// fraction or an exponent.
fn exact_int(text: &str) -> Option<i64> {
    if let Ok(v) = text.trim().parse::<i64>() {
        return Some(v);
    }
    i64::try_from(exact_scaled(text, 0)?).ok()
}

/// `text` × 10^`scale` if that is a whole number of at most 38 digits: the unscaled value
/// of a decimal with `scale` digits after the point. Read as decimal text, never through a
/// float (which would round `2^52 + 0.5`): digits, an optional fraction, an optional
/// exponent; whole only if every digit cut off is zero.
fn exact_scaled(text: &str, scale: i8) -> Option<i128> {
    let text = text.trim();
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => (-1i128, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{int}{frac}");
    // The value is digits × 10^shift.
    let shift = exponent
        .checked_sub(frac.len() as i32)?
        .checked_add(scale as i32)?;
    let digits = if shift >= 0 {
        if shift > 38 && digits.bytes().any(|b| b != b'0') {
            return None;
        }
        format!("{digits}{}", "0".repeat(shift.min(38) as usize))
    } else {
        let cut = digits.len().saturating_sub(shift.unsigned_abs() as usize);
        if digits[cut..].bytes().any(|b| b != b'0') {
            return None; // a fraction beyond the scale
        }
        digits[..cut].to_string()
    };
    let digits = digits.trim_start_matches('0');
    if digits.len() > 38 {
        return None;
    }
    Some(sign * digits.parse::<i128>().unwrap_or(0))
}

struct JsonTextDecoder;

impl arrow_json::reader::ArrayDecoder for JsonTextDecoder {
    fn decode(
        &mut self,
        tape: &arrow_json::reader::Tape<'_>,
        pos: &[u32],
    ) -> Result<arrow_array::ArrayRef, arrow_schema::ArrowError> {
        use arrow_json::reader::TapeElement;
        let mut builder =
            arrow_array::builder::StringBuilder::with_capacity(pos.len(), pos.len() * 16);
        let mut text = String::new();
        for p in pos {
            if matches!(tape.get(*p), TapeElement::Null) {
                builder.append_null();
                continue;
            }
            text.clear();
            write_json(tape, *p, &mut text)?;
            builder.append_value(&text);
        }
        Ok(Arc::new(builder.finish()))
    }
}

fn write_json(
    tape: &arrow_json::reader::Tape<'_>,
    idx: u32,
    out: &mut String,
) -> Result<(), arrow_schema::ArrowError> {
    use arrow_json::reader::TapeElement as T;
    let quote = |s: &str, out: &mut String| {
        out.push_str(&serde_json::to_string(s).expect("strings serialize"));
    };
    match tape.get(idx) {
        T::StartObject(end) => {
            out.push('{');
            let mut cur = idx + 1;
            while cur < end {
                if cur > idx + 1 {
                    out.push(',');
                }
                match tape.get(cur) {
                    T::String(s) => quote(tape.get_string(s), out),
                    _ => return Err(tape.error(cur, "object key")),
                }
                out.push(':');
                cur += 1;
                write_json(tape, cur, out)?;
                cur = tape.next(cur, "value")?;
            }
            out.push('}');
        }
        T::StartList(end) => {
            out.push('[');
            let mut cur = idx + 1;
            while cur < end {
                if cur > idx + 1 {
                    out.push(',');
                }
                write_json(tape, cur, out)?;
                cur = tape.next(cur, "value")?;
            }
            out.push(']');
        }
        T::String(s) => quote(tape.get_string(s), out),
        T::Number(s) => out.push_str(tape.get_string(s)),
        T::I64(_) => out.push_str(&tape_i64(tape, idx)?.to_string()),
        T::I32(v) => out.push_str(&v.to_string()),
        T::F64(high) => match tape.get(idx + 1) {
            T::F32(low) => {
                out.push_str(&f64::from_bits(((high as u64) << 32) | low as u64).to_string())
            }
            _ => return Err(tape.error(idx, "f64")),
        },
        T::F32(v) => out.push_str(&f32::from_bits(v).to_string()),
        T::True => out.push_str("true"),
        T::False => out.push_str("false"),
        T::Null => out.push_str("null"),
        _ => return Err(tape.error(idx, "a value")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int64_columns_take_whole_numbers_only() {
        assert_eq!(exact_int("19"), Some(19));
        assert_eq!(exact_int("-7"), Some(-7));
        assert_eq!(exact_int("100.0"), Some(100));
        assert_eq!(exact_int("1e3"), Some(1000));
        assert_eq!(exact_int("9223372036854775807"), Some(i64::MAX));
        assert_eq!(exact_int("19.99"), None);
        assert_eq!(exact_int("9223372036854775808"), None);
        assert_eq!(exact_int("1e300"), None);
        assert_eq!(exact_int("twelve"), None);
        // What a float would round.
        assert_eq!(exact_int("4503599627370497.5"), None);
        assert_eq!(exact_int("1.00000000000000001"), None);
        assert_eq!(exact_int("1.5e1"), Some(15));
        assert_eq!(exact_int("15e-1"), None);
        assert_eq!(exact_int("-0.0"), Some(0));
        let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "n",
            arrow_schema::DataType::Int64,
            true,
        )]));
        let mut dec = crate::decode::PageDecoder::new(schema.clone(), 4, true).unwrap();
        assert!(
            dec.decode_all(br#"[{"n": 19.99}]"#).is_err(),
            "not truncated to 19"
        );
        let mut dec = crate::decode::PageDecoder::new(schema, 4, true).unwrap();
        let batches = dec
            .decode_all(br#"[{"n": 19}, {"n": 2.0}, {"n": null}]"#)
            .unwrap();
        assert_eq!(batches[0].num_rows(), 3);
    }

    #[test]
    fn decimal_columns_take_what_they_hold_exactly() {
        assert_eq!(exact_scaled("19.99", 2), Some(1999));
        assert_eq!(exact_scaled("19.9", 2), Some(1990));
        assert_eq!(exact_scaled("-0.5", 1), Some(-5));
        assert_eq!(exact_scaled("1.5e2", 2), Some(15000));
        assert_eq!(exact_scaled("19.999", 2), None);
        assert_eq!(exact_scaled("0.1", 0), None);
        assert_eq!(
            exact_scaled("99999999999999999999999999999999999999", 0).map(digits),
            Some(38)
        );
        assert_eq!(
            exact_scaled("999999999999999999999999999999999999999", 0),
            None
        );
        let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "price",
            arrow_schema::DataType::Decimal128(6, 2),
            true,
        )]));
        let decode = |records: &[u8]| {
            crate::decode::PageDecoder::new(schema.clone(), 4, true)
                .unwrap()
                .decode_all(records)
        };
        assert!(
            decode(br#"[{"price": 19.999}]"#).is_err(),
            "not rounded to 20.00"
        );
        assert!(
            decode(br#"[{"price": 12345.6}]"#).is_err(),
            "past the precision"
        );
        let batches =
            decode(br#"[{"price": 19.99}, {"price": "7"}, {"price": 3}, {"price": null}]"#)
                .unwrap();
        let column = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::Decimal128Array>()
            .unwrap();
        assert_eq!(column.value(0), 1999);
        assert_eq!(column.value(1), 700);
        assert_eq!(column.value(2), 300);
        assert!(arrow_array::Array::is_null(column, 3));
    }
}
