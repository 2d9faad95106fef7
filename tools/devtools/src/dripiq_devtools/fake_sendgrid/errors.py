"""What SendGrid's Mail Send says when it refuses a request: its messages, word for word, and
the entry of its `{"errors": [...]}` body that carries one."""

from __future__ import annotations

HELP_URL = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
UNAUTHORIZED_MESSAGE = "The provided authorization grant is invalid, expired, or revoked"
PERSONALIZATIONS_REQUIRED = "The personalizations field is required and must have at least one personalization."
TO_REQUIRED = (
    "The to array is required for all personalization objects, "
    "and must have at least one email object with a valid email address."
)
FROM_REQUIRED = (
    "The from object must be provided for every email send. It is an object that requires "
    "the email parameter, but may also contain a name parameter.  "
    'e.g. {"email" : "example@example.com"}  or '
    '{"email" : "example@example.com", "name" : "Example Recipient"}.'
)
INVALID_ADDRESS = "Does not contain a valid address."
DUPLICATE_ADDRESS = (
    "Each email address in the personalization block should be unique between to, cc, and bcc. "
    "We found the first duplicate instance of [{email}] "
    "in the personalizations.{index}.{kind} field."
)
SUBJECT_REQUIRED = (
    "The subject is required. You can get around this requirement if you use a template "
    "with a subject defined or if every personalization has a subject defined."
)
CONTENT_REQUIRED = (
    "Unless a valid template_id is provided, the content parameter is required. There must be "
    "at least one defined content block. We typically suggest both text/plain and text/html "
    "blocks are included, but only one block is required."
)
CONTENT_TYPE_REQUIRED = "The content type must be a string at least one character in length."
CONTENT_VALUE_REQUIRED = "The content value must be a string at least one character in length."
# The messages below are SendGrid's documented ones (its Mail Send errors reference), except
# CONTENT_TYPE_REPEATED and REPLY_TO_EXCLUSIVE, which it documents only as rules.
TOO_MANY_PERSONALIZATIONS = (
    "The personalization block is limited to 1000 personalizations per API request. You have "
    "provided {count} personalizations. Please consider splitting this into multiple requests "
    "and resending your request."
)
TOO_MANY_RECIPIENTS = "There is a limit of 1000 total recipients (to + cc + bcc) per request."
CUSTOM_ARGS_NOT_STRINGS = "All values of custom arguments object must be strings"
CUSTOM_ARGS_TOO_LARGE = (
    "The combined size of both global and personalization custom arguments may not exceed "
    "10,000 bytes per personalization."
)
CATEGORIES_NOT_STRINGS = "Categories must be an array of strings."
TOO_MANY_CATEGORIES = "There is a limit of 10 categories for each email that is sent. You provided {count} categories."
CATEGORY_TOO_LONG = "Each category must not be longer than 255 characters. {value} exceeds this limit"
CATEGORY_REPEATED = "The categories must be a unique list, and you have included {duplicate} more than once."
CATEGORY_NOT_ASCII = "Categories can not contain non-ASCII characters."
REPLY_TO_EXCLUSIVE = "The reply_to and reply_to_list fields are mutually exclusive: use one of them, not both."
CONTENT_ORDER = (
    "Following RFC 1341, section 7.2, if either text/html or text/plain are to be sent in your "
    "email: text/plain needs to be first, followed by text/html, followed by any other content."
)
CONTENT_TYPE_REPEATED = "Each content type may be included only once, and you have included {type} more than once."
HEADER_RESERVED = "Header can not be one of the reserved keys."
HEADER_VALUES_NOT_STRINGS = "The header values must be strings."
SUBJECT_EMPTY = "The subject of your email must be a string at least one character in length."
SEND_AT_NOT_INTEGER = (
    "The send_at parameter is expecting a Unix timestamp as an integer. We will send "
    "immediately if you include a send_at timestamp that is in the past."
)
SEND_AT_TOO_FAR = "Scheduling more than 72 hours in advance is forbidden."
ASM_GROUP_NOT_INTEGER = "The ASM group ID must be an integer."

# What SendGrid says where the spec's schema fails, keyed by (field with indexes as *, keyword).
DOCUMENTED_SCHEMA_MESSAGES: dict[tuple[str, str], str] = {
    ("personalizations", "maxItems"): TOO_MANY_PERSONALIZATIONS,
    ("personalizations.*.subject", "type"): SUBJECT_EMPTY,
    ("personalizations.*.subject", "minLength"): SUBJECT_EMPTY,
    ("personalizations.*.send_at", "type"): SEND_AT_NOT_INTEGER,
    ("subject", "type"): SUBJECT_EMPTY,
    ("subject", "minLength"): SUBJECT_EMPTY,
    ("send_at", "type"): SEND_AT_NOT_INTEGER,
    ("categories", "type"): CATEGORIES_NOT_STRINGS,
    ("categories", "maxItems"): TOO_MANY_CATEGORIES,
    ("categories", "uniqueItems"): CATEGORY_REPEATED,
    ("categories.*", "type"): CATEGORIES_NOT_STRINGS,
    ("categories.*", "maxLength"): CATEGORY_TOO_LONG,
    ("asm.group_id", "type"): ASM_GROUP_NOT_INTEGER,
    ("asm.group_id", "required"): ASM_GROUP_NOT_INTEGER,
    ("tracking_settings.click_tracking.enable", "type"): "The click tracking enable param should be a boolean value.",
    ("tracking_settings.click_tracking.enable_text", "type"): "The click tracking enable text must be a boolean value.",
    ("tracking_settings.open_tracking.enable", "type"): "The open tracking enable param should be a boolean value.",
    ("tracking_settings.subscription_tracking.enable", "type"): (
        "The subscription tracking enable param should be a boolean value."
    ),
    ("tracking_settings.ganalytics.enable", "type"): "The Google Analytics enable param must be a boolean value.",
}
# Elsewhere, the wording of the JSON Schema library SendGrid's validator answers with (its
# custom_args answer is "Invalid type. Expected: object, given: string.").
SCHEMA_KEYWORD_MESSAGES: dict[str, str] = {
    "type": "Invalid type. Expected: {limit}, given: {given}.",
    "required": "{property} is required.",
    "minItems": "Array must have at least {limit} items.",
    "maxItems": "Array must have at most {limit} items.",
    "uniqueItems": "Array items must be unique; {duplicate} is repeated.",
    "minLength": "String length must be greater than or equal to {limit}.",
    "maxLength": "String length must be less than or equal to {limit}.",
    "maxProperties": "Must have at most {limit} properties.",
    "format": "Does not match format '{limit}'.",
    "enum": "Must be one of the following: {limit}.",
}

ApiError = dict[str, str | None]


def api_error(message: str, field: str | None = None) -> ApiError:
    """One entry of SendGrid's `errors` array; clients key their handling on `field`."""
    help_url = f"{HELP_URL}#message.{_help_anchor(field)}" if field else None
    return {"message": message, "field": field, "help": help_url}


def _help_anchor(field: str) -> str:
    return ".".join(part for part in field.split(".") if not part.isdigit())
