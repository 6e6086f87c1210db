//! Which column of an export holds which field: headers matched ignoring case and spaces.

use super::ImportError;

/// The fields an import reads, in the spelling the contract gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    RecordId,
    LinkedinUrl,
    ProfileId,
    ProfileUrn,
    AccountId,
    FirstName,
    LastName,
    Company,
    Message,
    Priority,
    /// Salesforce's `Lead` or `Contact`.
    Object,
}

impl Field {
    const ALL: [Field; 11] = [
        Field::RecordId,
        Field::LinkedinUrl,
        Field::ProfileId,
        Field::ProfileUrn,
        Field::AccountId,
        Field::FirstName,
        Field::LastName,
        Field::Company,
        Field::Message,
        Field::Priority,
        Field::Object,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::RecordId => "recordId",
            Field::LinkedinUrl => "linkedinUrl",
            Field::ProfileId => "profileId",
            Field::ProfileUrn => "profileUrn",
            Field::AccountId => "accountId",
            Field::FirstName => "firstName",
            Field::LastName => "lastName",
            Field::Company => "company",
            Field::Message => "message",
            Field::Priority => "priority",
            Field::Object => "object",
        }
    }

    /// The field a header names: `Record ID`, `recordid` and `RECORD id` are `recordId`.
    fn of_header(header: &str) -> Option<Field> {
        let folded: String = header
            .chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect();
        Field::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(&folded))
    }
}

/// Where each known field sits in a row, and the headers that named nothing known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    positions: Vec<(Field, usize)>,
    /// How many fields the header has: a row with another count is a bad row.
    pub width: usize,
    pub ignored: Vec<String>,
}

impl Columns {
    /// Reads the header line. `recordId` and one of the profile columns are required.
    pub fn parse(header: &csv::ByteRecord) -> Result<Columns, ImportError> {
        let mut positions = Vec::new();
        let mut ignored = Vec::new();
        for (index, raw) in header.iter().enumerate() {
            let text = std::str::from_utf8(raw)
                .map_err(|_| ImportError::Header(format!("column {} is not UTF-8", index + 1)))?;
            // Excel writes a byte-order mark before the first header.
            let text = text.trim_start_matches('\u{feff}');
            match Field::of_header(text) {
                Some(field) if positions.iter().any(|(f, _)| *f == field) => {
                    return Err(ImportError::Header(format!(
                        "two columns are {}",
                        field.name()
                    )));
                }
                Some(field) => positions.push((field, index)),
                None => ignored.push(text.to_owned()),
            }
        }
        let has = |field| positions.iter().any(|(f, _)| *f == field);
        if !has(Field::RecordId) {
            return Err(ImportError::Header("a recordId column is required".into()));
        }
        if ![Field::LinkedinUrl, Field::ProfileId, Field::ProfileUrn]
            .into_iter()
            .any(has)
        {
            return Err(ImportError::Header(
                "a linkedinUrl, profileId or profileUrn column is required".into(),
            ));
        }
        Ok(Columns {
            positions,
            width: header.len(),
            ignored,
        })
    }

    /// Where `field` sits, if the file has it.
    pub fn position(&self, field: Field) -> Option<usize> {
        self.positions
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, index)| *index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(names: &[&str]) -> csv::ByteRecord {
        csv::ByteRecord::from(names.to_vec())
    }

    #[test]
    fn headers_match_ignoring_case_and_spaces_and_unknown_ones_are_listed() {
        let columns = Columns::parse(&header(&[
            "\u{feff}Record ID",
            "LINKEDIN url",
            "Owner",
            "first name",
            "priority",
        ]))
        .unwrap();
        assert_eq!(columns.position(Field::RecordId), Some(0));
        assert_eq!(columns.position(Field::LinkedinUrl), Some(1));
        assert_eq!(columns.position(Field::FirstName), Some(3));
        assert_eq!(columns.position(Field::Priority), Some(4));
        assert_eq!(columns.position(Field::ProfileId), None);
        assert_eq!(columns.ignored, vec!["Owner".to_string()]);
        assert_eq!(columns.width, 5);
    }

    #[test]
    fn a_header_without_record_or_profile_columns_is_refused() {
        let no_record = Columns::parse(&header(&["linkedinUrl"])).unwrap_err();
        assert!(no_record.to_string().contains("recordId"), "{no_record}");
        let no_profile = Columns::parse(&header(&["recordId", "company"])).unwrap_err();
        assert!(
            no_profile.to_string().contains("profileUrn"),
            "{no_profile}"
        );
        let twice = Columns::parse(&header(&["recordId", "profileId", "Profile Id"])).unwrap_err();
        assert!(twice.to_string().contains("two columns"), "{twice}");
    }
}
