#!/usr/bin/env node
import { createRequire as __WEBPACK_EXTERNAL_createRequire } from "module";
/******/ var __webpack_modules__ = ({

/***/ 581:
/***/ ((module, __unused_webpack___webpack_exports__, __nccwpck_require__) => {

__nccwpck_require__.a(module, async (__webpack_handle_async_dependencies__, __webpack_async_result__) => { try {
/* harmony import */ var _cli_main_js__WEBPACK_IMPORTED_MODULE_0__ = __nccwpck_require__(386);
// Entry of the `owncloud-backup` command.

(0,_cli_main_js__WEBPACK_IMPORTED_MODULE_0__/* .dropOutputToClosedPipes */ .D3)();
process.exitCode = await (0,_cli_main_js__WEBPACK_IMPORTED_MODULE_0__/* .runCli */ .ak)(process.argv.slice(2));

__webpack_async_result__();
} catch(e) { __webpack_async_result__(e); } }, 1);

/***/ }),

/***/ 386:
/***/ ((__unused_webpack_module, __webpack_exports__, __nccwpck_require__) => {


// EXPORTS
__nccwpck_require__.d(__webpack_exports__, {
  D3: () => (/* binding */ dropOutputToClosedPipes),
  ak: () => (/* binding */ runCli)
});

// UNUSED EXPORTS: ENV, EXIT, cliInputs, listText, pathRestoreSummary, resticSummary, restoreSummary, summary

;// CONCATENATED MODULE: external "node:fs"
const external_node_fs_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:fs");
;// CONCATENATED MODULE: external "node:path"
const external_node_path_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:path");
;// CONCATENATED MODULE: external "node:util"
const external_node_util_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:util");
;// CONCATENATED MODULE: external "node:os"
const external_node_os_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:os");
;// CONCATENATED MODULE: ./src/errors.ts
/**
 * A mistake in what the user asked for (an input, an option, a path that is not an
 * ownCloud instance). Reported as one clear message, never with a stack trace.
 */
class InputError extends Error {
    name = 'InputError';
}
/**
 * A backup that could not be completed for a reason outside the user's input: a tool
 * failed, the database refused, the link died. The message names the cause.
 */
class BackupError extends Error {
    name = 'BackupError';
}
/** The link to the host failed (the command may or may not have run there). */
class LinkError extends BackupError {
    name = 'LinkError';
}
/**
 * Maintenance mode could not be switched back off: the one failure an administrator must
 * act on at once, so it is never hidden behind another.
 */
class MaintenanceNotRestoredError extends BackupError {
    name = 'MaintenanceNotRestoredError';
}
/**
 * A restore that failed after it had started changing the target: the message says what
 * failed and in what state the instance is now (the previous state put back, or not).
 */
class RestoreError extends BackupError {
    name = 'RestoreError';
}
/** The run was interrupted (SIGINT/SIGTERM, or the workflow was cancelled). */
class InterruptedError extends Error {
    name = 'InterruptedError';
    constructor(message = 'The backup was interrupted.') {
        super(message);
    }
}
/** The message to show for any error: ours are written for people; others get their class. */
function describeError(error) {
    if (error instanceof InputError ||
        error instanceof BackupError ||
        error instanceof InterruptedError)
        return error.message;
    if (error instanceof Error)
        return `${error.name}: ${error.message}`;
    return String(error);
}

;// CONCATENATED MODULE: ./src/host/guarded.ts
// Long-running commands on the host (database dumps) are wrapped in a small POSIX sh
// script that (1) takes the secret from the first line of stdin and hands it to the tool
// without any argv seeing it, and (2) keeps watching stdin: when it ends, the client went
// away (cancelled, timed out, link dead), so the dump is stopped instead of left running
// on the server holding a transaction open.

const SCRIPT = `
mode=$1; shift
IFS= read -r secret || secret=
exec 4<&0
case $mode in
  mysql-option-file)
    "$@" 4<&- </dev/null 3<<OWNCLOUD_BACKUP_EOF &
[client]
password=$secret
OWNCLOUD_BACKUP_EOF
    ;;
  mysql-pwd) MYSQL_PWD=$secret "$@" 4<&- </dev/null & ;;
  pgpassword) PGPASSWORD=$secret "$@" 4<&- </dev/null & ;;
  *) "$@" 4<&- </dev/null & ;;
esac
child=$!
secret=
( while IFS= read -r _ <&4; do :; done; kill -TERM "$child" 2>/dev/null ) >/dev/null 2>&1 </dev/null &
watchdog=$!
exec 4<&-
wait "$child"
status=$?
kill "$watchdog" 2>/dev/null
exit "$status"
`.trim();
/** The argv to run on the host; send `secretLine(...)` as stdin and keep stdin open. */
function guardedCommand(argv, delivery) {
    return ['sh', '-c', SCRIPT, 'owncloud-backup', delivery, ...argv];
}
const INPUT_SCRIPT = `
mode=$1; shift
IFS= read -r secret || secret=
case $mode in
  mysql-option-file)
    exec "$@" 3<<OWNCLOUD_BACKUP_EOF
[client]
password=$secret
OWNCLOUD_BACKUP_EOF
    ;;
  mysql-pwd) MYSQL_PWD=$secret; export MYSQL_PWD; exec "$@" ;;
  pgpassword) PGPASSWORD=$secret; export PGPASSWORD; exec "$@" ;;
  *) exec "$@" ;;
esac
`.trim();
/**
 * For a command that reads data on stdin (a dump being loaded): the wrapper takes the
 * secret from the first line and hands the rest of stdin to the command. The end of stdin
 * is the end of the data here, so there is no watchdog; a load cut short is caught by the
 * checks after it.
 */
function guardedInputCommand(argv, delivery) {
    return ['sh', '-c', INPUT_SCRIPT, 'owncloud-backup', delivery, ...argv];
}
/** argv that runs a command with its stdout written to a file on the host. */
function writingTo(path, argv) {
    return ['sh', '-c', 'out=$1; shift; exec "$@" > "$out"', 'sh', path, ...argv];
}
/** argv that runs a command with its stdin read from a file on the host. */
function readingFrom(path, argv) {
    return ['sh', '-c', 'in=$1; shift; exec "$@" < "$in"', 'sh', path, ...argv];
}
/** The first stdin line the wrapper reads: the secret, which must fit on one line. */
function secretLine(secret) {
    if (/[\r\n\0]/.test(secret))
        throw new BackupError('The database password contains a line break or NUL byte, which no database client accepts.');
    return `${secret}\n`;
}
/** A value in a MySQL option file: double-quoted, with option-file escapes. */
function mysqlOptionValue(value) {
    return `"${value.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
}

;// CONCATENATED MODULE: ./node_modules/is-plain-obj/index.js
function isPlainObject(value) {
	if (typeof value !== 'object' || value === null) {
		return false;
	}

	const prototype = Object.getPrototypeOf(value);
	return (prototype === null || prototype === Object.prototype || Object.getPrototypeOf(prototype) === null) && !(Symbol.toStringTag in value) && !(Symbol.iterator in value);
}

;// CONCATENATED MODULE: external "node:url"
const external_node_url_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:url");
;// CONCATENATED MODULE: ./node_modules/execa/lib/arguments/file-url.js


// Allow some arguments/options to be either a file path string or a file URL
const safeNormalizeFileUrl = (file, name) => {
	const fileString = normalizeFileUrl(normalizeDenoExecPath(file));

	if (typeof fileString !== 'string') {
		throw new TypeError(`${name} must be a string or a file URL: ${fileString}.`);
	}

	return fileString;
};

// In Deno node:process execPath is a special object, not just a string:
// https://github.com/denoland/deno/blob/f460188e583f00144000aa0d8ade08218d47c3c1/ext/node/polyfills/process.ts#L344
const normalizeDenoExecPath = file => isDenoExecPath(file)
	? file.toString()
	: file;

const isDenoExecPath = file => typeof file !== 'string'
	&& file
	&& Object.getPrototypeOf(file) === String.prototype;

// Same but also allows other values, e.g. `boolean` for the `shell` option
const normalizeFileUrl = file => file instanceof URL ? (0,external_node_url_namespaceObject.fileURLToPath)(file) : file;

;// CONCATENATED MODULE: ./node_modules/execa/lib/methods/parameters.js



// The command `arguments` and `options` are both optional.
// This also does basic validation on them and on the command file.
const normalizeParameters = (rawFile, rawArguments = [], rawOptions, ...rawExtraArguments) => {
	if (rawExtraArguments.length > 0) {
		throw new TypeError('Execa accepts at most three arguments: file, arguments, options.');
	}

	if (rawOptions !== undefined && isPlainObject(rawArguments)) {
		throw new TypeError('Execa accepts at most one options object. Please merge the second and third arguments.');
	}

	const filePath = safeNormalizeFileUrl(rawFile, 'First argument');
	const [commandArguments, options = {}] = isPlainObject(rawArguments)
		? [[], rawArguments]
		: [rawArguments, rawOptions];

	if (!Array.isArray(commandArguments)) {
		throw new TypeError(`Second argument must be either an array of arguments or an options object: ${commandArguments}`);
	}

	if (commandArguments.some(commandArgument => typeof commandArgument === 'object' && commandArgument !== null)) {
		throw new TypeError(`Second argument must be an array of strings: ${commandArguments}`);
	}

	const normalizedArguments = commandArguments.map(String);
	const nullByteArgument = normalizedArguments.find(normalizedArgument => normalizedArgument.includes('\0'));
	if (nullByteArgument !== undefined) {
		throw new TypeError(`Arguments cannot contain null bytes ("\\0"): ${nullByteArgument}`);
	}

	if (!isPlainObject(options)) {
		throw new TypeError(`Last argument must be an options object: ${options}`);
	}

	// Prevent prototype pollution by copying only own properties to a null-prototype object
	return [filePath, normalizedArguments, {__proto__: null, ...options}];
};

;// CONCATENATED MODULE: external "node:child_process"
const external_node_child_process_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:child_process");
;// CONCATENATED MODULE: external "node:process"
const external_node_process_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:process");
;// CONCATENATED MODULE: ./node_modules/execa/lib/arguments/escape.js



// Compute `result.command` and `result.escapedCommand`
const joinCommand = (filePath, rawArguments, shell) => {
	const fileAndArguments = [filePath, ...rawArguments];
	const command = fileAndArguments.join(' ');
	// With `shell`, the shell interprets the command, so it must not be quoted
	const escapedCommand = shell
		? escapeControlCharacters(command)
		: fileAndArguments
			.map(fileAndArgument => quoteString(escapeControlCharacters(fileAndArgument)))
			.join(' ');
	return {command, escapedCommand};
};

// Remove ANSI sequences and escape control characters and newlines
const escapeLines = lines => (0,external_node_util_namespaceObject.stripVTControlCharacters)(lines)
	.split('\n')
	.map(line => escapeControlCharacters(line))
	.join('\n');

const escapeControlCharacters = line => line.replaceAll(SPECIAL_CHAR_REGEXP, character => escapeControlCharacter(character));

const escapeControlCharacter = character => {
	const commonEscape = COMMON_ESCAPES[character];
	if (commonEscape !== undefined) {
		return commonEscape;
	}

	const codepoint = character.codePointAt(0);
	const codepointHex = codepoint.toString(16);
	return codepoint <= ASTRAL_START
		? `\\u${codepointHex.padStart(4, '0')}`
		: `\\U${codepointHex}`;
};

// Characters that would create issues when printed are escaped using the \u or \U notation.
// Those include control characters and newlines.
// The \u and \U notation is Bash specific, but there is no way to do this in a shell-agnostic way.
// Some shells do not even have a way to print those characters in an escaped fashion.
// Therefore, we prioritize printing those safely, instead of allowing those to be copy-pasted.
// List of Unicode character categories: https://www.fileformat.info/info/unicode/category/index.htm
const getSpecialCharRegExp = () => {
	try {
		// This throws when using Node.js without ICU support.
		// When using a RegExp literal, this would throw at parsing-time, instead of runtime.
		// eslint-disable-next-line prefer-regex-literals
		return new RegExp('\\p{Separator}|\\p{Other}', 'gu');
	} catch {
		// Similar to the above RegExp, but works even when Node.js has been built without ICU support.
		// Unlike the above RegExp, it only covers whitespaces and C0/C1 control characters.
		// It does not cover some edge cases, such as Unicode reserved characters.
		// See https://github.com/sindresorhus/execa/issues/1143
		// eslint-disable-next-line no-control-regex, regexp/no-control-character, unicorn/prefer-unicode-code-point-escapes
		return /[\s\u0000-\u001F\u007F-\u009F\u00AD]/g;
	}
};

const SPECIAL_CHAR_REGEXP = getSpecialCharRegExp();

// Accepted by $'...' in Bash.
// Exclude \a \e \v which are accepted in Bash but not in JavaScript (except \v) and JSON.
const COMMON_ESCAPES = {
	' ': ' ',
	'\b': '\\b',
	'\f': '\\f',
	'\n': '\\n',
	'\r': '\\r',
	'\t': '\\t',
};

// Up until that code point, a character is a single UTF-16 code unit, so the \u notation can be used instead of \U
const ASTRAL_START = 0xFF_FF;

// Some characters are shell-specific, i.e. need to be escaped when the command is copy-pasted then run.
// Escaping is shell-specific. We cannot know which shell is used: `process.platform` detection is not enough.
// For example, Windows users could be using `cmd.exe`, Powershell or Bash for Windows which all use different escaping.
// We use '...' on Unix, which is POSIX shell compliant and escape all characters but ' so this is fairly safe.
// On Windows, we assume cmd.exe is used and escape with "...", which also works with Powershell.
const quoteString = escapedArgument => {
	if (NO_ESCAPE_REGEXP.test(escapedArgument)) {
		return escapedArgument;
	}

	return external_node_process_namespaceObject.platform === 'win32'
		? `"${escapedArgument.replaceAll('"', '""')}"`
		: `'${escapedArgument.replaceAll('\'', '\'\\\'\'')}'`;
};

const NO_ESCAPE_REGEXP = /^[\w\-./]+$/;

;// CONCATENATED MODULE: external "node:string_decoder"
const external_node_string_decoder_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:string_decoder");
;// CONCATENATED MODULE: ./node_modules/execa/lib/utils/uint-array.js


const {toString: objectToString} = Object.prototype;

const isArrayBuffer = value => objectToString.call(value) === '[object ArrayBuffer]';

// Is either Uint8Array or Buffer
const isUint8Array = value => objectToString.call(value) === '[object Uint8Array]';

const bufferToUint8Array = buffer => new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);

const textEncoder = new TextEncoder();
const stringToUint8Array = string => textEncoder.encode(string);

const textDecoder = new TextDecoder();
const uint8ArrayToString = uint8Array => textDecoder.decode(uint8Array);

const joinToString = (uint8ArraysOrStrings, encoding) => {
	const strings = uint8ArraysToStrings(uint8ArraysOrStrings, encoding);
	return strings.join('');
};

const uint8ArraysToStrings = (uint8ArraysOrStrings, encoding) => {
	if (encoding === 'utf8' && uint8ArraysOrStrings.every(uint8ArrayOrString => typeof uint8ArrayOrString === 'string')) {
		return uint8ArraysOrStrings;
	}

	const decoder = new external_node_string_decoder_namespaceObject.StringDecoder(encoding);
	const strings = uint8ArraysOrStrings
		.map(uint8ArrayOrString => typeof uint8ArrayOrString === 'string'
			? stringToUint8Array(uint8ArrayOrString)
			: uint8ArrayOrString)
		.map(uint8Array => decoder.write(uint8Array));
	const finalString = decoder.end();
	return finalString === '' ? strings : [...strings, finalString];
};

const joinToUint8Array = uint8ArraysOrStrings => uint8ArraysOrStrings.length === 1 && isUint8Array(uint8ArraysOrStrings[0]) ? uint8ArraysOrStrings[0] : concatUint8Arrays(stringsToUint8Arrays(uint8ArraysOrStrings));

const stringsToUint8Arrays = uint8ArraysOrStrings => uint8ArraysOrStrings.map(uint8ArrayOrString => typeof uint8ArrayOrString === 'string'
	? stringToUint8Array(uint8ArrayOrString)
	: uint8ArrayOrString);

const concatUint8Arrays = uint8Arrays => {
	const result = new Uint8Array(getJoinLength(uint8Arrays));

	let index = 0;
	for (const uint8Array of uint8Arrays) {
		result.set(uint8Array, index);
		index += uint8Array.length;
	}

	return result;
};

const getJoinLength = uint8Arrays => {
	let joinLength = 0;
	for (const uint8Array of uint8Arrays) {
		joinLength += uint8Array.length;
	}

	return joinLength;
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/return/final-error.js
// When the subprocess fails, this is the error instance being returned.
// If another error instance is being thrown, it is kept as `error.cause`.
const getFinalError = (originalError, message, isSync) => {
	const ErrorClass = isSync ? ExecaSyncError : ExecaError;
	const options = originalError instanceof DiscardedError ? {} : {cause: originalError};
	return new ErrorClass(message, options);
};

// Indicates that the error is used only to interrupt control flow, but not in the return value
class DiscardedError extends Error {}

// Proper way to set `error.name`: it should be inherited and non-enumerable
const setErrorName = (ErrorClass, value) => {
	Object.defineProperties(ErrorClass.prototype, {
		name: {
			value,
			writable: true,
			enumerable: false,
			configurable: true,
		},
		[execaErrorSymbol]: {
			value: true,
			writable: false,
			enumerable: false,
			configurable: false,
		},
	});
};

// Unlike `instanceof`, this works across realms
const isExecaError = error => isErrorInstance(error) && execaErrorSymbol in error;

const execaErrorSymbol = Symbol('isExecaError');

// `instanceof` handles `DOMException` and subclasses with a custom `Symbol.toStringTag`, `Object.prototype.toString()` handles other realms
const isErrorInstance = value => value instanceof Error || Object.prototype.toString.call(value) === '[object Error]';

// We use two different Error classes for async/sync methods since they have slightly different shape and types
class ExecaError extends Error {}
// eslint-disable-next-line unicorn/no-top-level-side-effects -- `error.name` must be set as soon as the class is defined
setErrorName(ExecaError, ExecaError.name);

class ExecaSyncError extends Error {}
// eslint-disable-next-line unicorn/no-top-level-side-effects -- `error.name` must be set as soon as the class is defined
setErrorName(ExecaSyncError, ExecaSyncError.name);

;// CONCATENATED MODULE: ./node_modules/execa/lib/utils/type-name.js
// Like `typeof`, but `null` is reported as `null` instead of `object`, so error messages name the actual value
const getTypeName = value => value === null ? 'null' : typeof value;

;// CONCATENATED MODULE: ./node_modules/execa/lib/methods/template.js







// Check whether the template string syntax is being used
const isTemplateString = templates => Array.isArray(templates) && Array.isArray(templates.raw);

// Convert execa`file ...commandArguments` to execa(file, commandArguments)
const parseTemplates = (templates, expressions) => {
	let tokens = [];
	// Whether whitespaces separate the last token from the next one
	let isSeparated = false;

	for (const [index, template] of templates.entries()) {
		({tokens, isSeparated} = parseTemplate({
			templates,
			expressions,
			tokens,
			isSeparated,
			index,
			template,
		}));
	}

	if (tokens.length === 0) {
		throw new TypeError('Template script must not be empty');
	}

	const [file, ...commandArguments] = tokens;
	return [file, commandArguments, {}];
};

const parseTemplate = ({templates, expressions, tokens, isSeparated, index, template}) => {
	if (template === undefined) {
		throw new TypeError(`Invalid backslash sequence: ${templates.raw[index]}`);
	}

	const {nextTokens, leadingWhitespaces, trailingWhitespaces} = splitByWhitespaces(template, templates.raw[index]);
	const newTokens = concatTokens(tokens, nextTokens, isSeparated || leadingWhitespaces);
	// When the template has no tokens, the whitespaces before it still separate the next token, e.g. after an empty array expression
	const isTemplateSeparated = trailingWhitespaces || (nextTokens.length === 0 && isSeparated);

	if (index === expressions.length) {
		return {tokens: newTokens, isSeparated: isTemplateSeparated};
	}

	const expression = expressions[index];
	const expressionTokens = Array.isArray(expression)
		? expression.map(expression => parseExpression(expression))
		: [parseExpression(expression)];
	return {
		tokens: concatTokens(newTokens, expressionTokens, isTemplateSeparated),
		isSeparated: expressionTokens.length === 0 && isTemplateSeparated,
	};
};

// Like `string.split(/[ \t\r\n]+/)` except newlines and tabs are:
//  - ignored when input as a backslash sequence like: `echo foo\n bar`
//  - not ignored when input directly
// The only way to distinguish those in JavaScript is to use a tagged template and compare:
//  - the first array argument, which does not escape backslash sequences
//  - its `raw` property, which escapes them
const splitByWhitespaces = (template, rawTemplate) => {
	// The template is empty either between two `${expression}`, or when it only contains escaped newlines.
	// Neither holds any whitespace, so neither separates tokens.
	if (template.length === 0) {
		return {nextTokens: [], leadingWhitespaces: false, trailingWhitespaces: false};
	}

	const nextTokens = [];
	let templateStart = 0;
	let isLeadingWhitespaces = false;

	for (
		let templateIndex = 0, rawIndex = 0;
		templateIndex < template.length;
		templateIndex += 1, rawIndex += 1
	) {
		const rawCharacter = rawTemplate[rawIndex];
		if (DELIMITERS.has(rawCharacter)) {
			// Escaped newlines are ignored, so a whitespace after them is still a leading one
			if (templateIndex === 0) {
				isLeadingWhitespaces = true;
			}

			if (templateStart !== templateIndex) {
				nextTokens.push(template.slice(templateStart, templateIndex));
			}

			templateStart = templateIndex + 1;
		} else if (rawCharacter === '\\') {
			const nextRawCharacter = rawTemplate[rawIndex + 1];
			if (nextRawCharacter === '\n') {
				// Handles escaped newlines in templates
				templateIndex -= 1;
				rawIndex += 1;
			} else if (nextRawCharacter === 'u' && rawTemplate[rawIndex + 2] === '{') {
				const closingBraceIndex = rawTemplate.indexOf('}', rawIndex + 3);
				// A code point above the BMP is a surrogate pair, i.e. two characters, in the template string
				if (isAstralEscape(rawTemplate.slice(rawIndex + 3, closingBraceIndex))) {
					templateIndex += 1;
				}

				rawIndex = closingBraceIndex;
			} else {
				rawIndex += ESCAPE_LENGTH[nextRawCharacter] ?? 1;
			}
		}
	}

	const isTrailingWhitespaces = templateStart === template.length;
	if (!isTrailingWhitespaces) {
		nextTokens.push(template.slice(templateStart));
	}

	return {nextTokens, leadingWhitespaces: isLeadingWhitespaces, trailingWhitespaces: isTrailingWhitespaces};
};

const isAstralEscape = codePointHex => Number.parseInt(codePointHex, 16) > ASTRAL_START;

const DELIMITERS = new Set([' ', '\t', '\r', '\n']);

// Number of characters in backslash escape sequences: \0 \xXX or \uXXXX
// \cX is allowed in RegExps but not in strings
// Octal sequences are not allowed in strict mode
const ESCAPE_LENGTH = {x: 3, u: 5};

const concatTokens = (tokens, nextTokens, isSeparated) => isSeparated
	|| tokens.length === 0
	|| nextTokens.length === 0
	? [...tokens, ...nextTokens]
	: [
		...tokens.slice(0, -1),
		`${tokens.at(-1)}${nextTokens[0]}`,
		...nextTokens.slice(1),
	];

// Handle `${expression}` inside the template string syntax
const parseExpression = expression => {
	const typeOfExpression = getTypeName(expression);

	if (typeOfExpression === 'string') {
		return expression;
	}

	if (typeOfExpression === 'number') {
		return String(expression);
	}

	// Only own properties are checked: a polluted `Object.prototype.stdout` must not turn any plain object into a subprocess result.
	// A failed subprocess result is an error instance instead.
	if ((isPlainObject(expression) || isExecaError(expression)) && (Object.hasOwn(expression, 'stdout') || Object.hasOwn(expression, 'isMaxBuffer'))) {
		return getSubprocessResult(expression);
	}

	if (expression instanceof external_node_child_process_namespaceObject.ChildProcess || Object.prototype.toString.call(expression) === '[object Promise]') {
		// eslint-disable-next-line no-template-curly-in-string
		throw new TypeError('Unexpected subprocess in template expression. Please use ${await subprocess} instead of ${subprocess}.');
	}

	throw new TypeError(`Unexpected "${typeOfExpression}" in template expression`);
};

const getSubprocessResult = result => {
	// Read the own property only: results with `stdout: 'ignore'` have no `stdout` property, which must not be read from a polluted prototype
	const stdout = Object.hasOwn(result, 'stdout') ? result.stdout : undefined;
	if (typeof stdout === 'string') {
		return stdout;
	}

	if (isUint8Array(stdout)) {
		return uint8ArrayToString(stdout);
	}

	if (stdout === undefined) {
		throw new TypeError('Missing result.stdout in template expression. This is probably due to the previous subprocess\' "stdout" option.');
	}

	throw new TypeError(`Unexpected "${getTypeName(stdout)}" stdout in template expression`);
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/utils/standard-stream.js


const isStandardStream = stream => STANDARD_STREAMS.includes(stream);
const STANDARD_STREAMS = [external_node_process_namespaceObject.stdin, external_node_process_namespaceObject.stdout, external_node_process_namespaceObject.stderr];
const STANDARD_STREAMS_ALIASES = ['stdin', 'stdout', 'stderr'];
const getStreamName = fdNumber => STANDARD_STREAMS_ALIASES[fdNumber] ?? `stdio[${fdNumber}]`;

// `subprocess.all` is created by Execa itself, which then pipes `stdout`/`stderr` into it.
// `verbose` needs to tell that pipe apart from a user pipe, which it disables.
const allStreamSymbol = Symbol('execa.allStream');
const setAllStream = stream => Object.assign(stream, {[allStreamSymbol]: true});
const isAllStream = stream => stream?.[allStreamSymbol] === true;

;// CONCATENATED MODULE: ./node_modules/execa/lib/utils/options.js
// The options of methods like `subprocess.pipe()`, `subprocess.readable()` or `sendMessage()` are kept on a null-prototype object, otherwise a polluted `Object.prototype` would inject option values.
// Like destructuring them, `null` throws.
const copyOptions = (options = {}) => {
	if (options === null) {
		throw new TypeError('The options must be an object, not `null`.');
	}

	return {__proto__: null, ...options};
};

const checkBooleanOption = (value, optionName) => {
	if (value !== undefined && typeof value !== 'boolean') {
		throw new TypeError(`The \`${optionName}\` option must use a boolean.`);
	}
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/arguments/specific.js





// Some options can have different values for `stdout`/`stderr`/`fd3`.
// This normalizes those to array of values.
// For example, `{verbose: {stdout: 'none', stderr: 'full'}}` becomes `{verbose: ['none', 'none', 'full']}`
const normalizeFdSpecificOptions = options => {
	// Keep the null prototype, otherwise a polluted `Object.prototype` would inject option values
	const optionsCopy = {__proto__: null, ...options};

	for (const optionName of FD_SPECIFIC_OPTIONS) {
		optionsCopy[optionName] = normalizeFdSpecificOption(options, optionName);
	}

	return optionsCopy;
};

const normalizeFdSpecificOption = (options, optionName) => {
	const stdioLength = getStdioLength(options);
	const optionBaseArray = Array.from({length: stdioLength + 1});
	const optionArray = normalizeFdSpecificValue(options[optionName], optionBaseArray, optionName, stdioLength);
	return addDefaultValue(optionArray, optionName);
};

const getStdioLength = ({stdio}) => Array.isArray(stdio)
	? Math.max(stdio.length, STANDARD_STREAMS_ALIASES.length)
	: STANDARD_STREAMS_ALIASES.length;

const normalizeFdSpecificValue = (optionValue, optionArray, optionName, stdioLength) => {
	if (isPlainObject(optionValue)) {
		return normalizeOptionObject(optionValue, optionArray, optionName, stdioLength);
	}

	validateFdSpecificValue(optionValue, optionName);
	return optionArray.fill(optionValue);
};

const normalizeOptionObject = (optionValue, optionArray, optionName, stdioLength) => {
	for (const fdName of Object.keys(optionValue).sort(compareFdName)) {
		validateFdSpecificValue(optionValue[fdName], optionName, `${optionName}.${fdName}`);
		for (const fdNumber of parseFdName(fdName, optionName, stdioLength)) {
			optionArray[fdNumber] = optionValue[fdName];
		}
	}

	return optionArray;
};

// Ensure priority order when setting both `stdout`/`stderr`, `fd1`/`fd2`, and `all`
const compareFdName = (fdNameA, fdNameB) => getFdNameOrder(fdNameA) < getFdNameOrder(fdNameB) ? 1 : -1;

const getFdNameOrder = fdName => {
	if (fdName === 'stdout' || fdName === 'stderr') {
		return 0;
	}

	return fdName === 'all' ? 2 : 1;
};

const parseFdName = (fdName, optionName, stdioLength) => {
	if (fdName === 'ipc') {
		return [stdioLength];
	}

	const fdNumber = parseFd(fdName);
	if (fdNumber === undefined || fdNumber === 0) {
		throw new TypeError(`"${optionName}.${fdName}" is invalid.
It must be "${optionName}.stdout", "${optionName}.stderr", "${optionName}.all", "${optionName}.ipc", or "${optionName}.fd3", "${optionName}.fd4" (and so on).`);
	}

	if (fdNumber !== 'all' && fdNumber >= stdioLength) {
		throw new TypeError(`"${optionName}.${fdName}" is invalid: that file descriptor does not exist.
Please set the "stdio" option to ensure that file descriptor exists.`);
	}

	return fdNumber === 'all' ? [1, 2] : [fdNumber];
};

// Use the same syntax for fd-specific options and the `from`/`to` options
const parseFd = fdName => {
	if (fdName === 'all') {
		return fdName;
	}

	if (STANDARD_STREAMS_ALIASES.includes(fdName)) {
		return STANDARD_STREAMS_ALIASES.indexOf(fdName);
	}

	const regexpResult = FD_REGEXP.exec(fdName);
	if (regexpResult !== null) {
		return Number(regexpResult.groups.fdNumber);
	}
};

const FD_REGEXP = /^fd(?<fdNumber>\d+)$/;

const addDefaultValue = (optionArray, optionName) => optionArray.map(optionValue => optionValue === undefined
	? DEFAULT_OPTIONS[optionName]
	: optionValue);

const BOOLEAN_FD_SPECIFIC_OPTIONS = new Set(['lines', 'buffer', 'stripFinalNewline']);

// Wrong types must be reported instead of being silently coerced, e.g. a truthy string enabling the `buffer` option.
// `undefined` uses the default value.
const validateFdSpecificValue = (optionValue, optionName, fullOptionName = optionName) => {
	if (BOOLEAN_FD_SPECIFIC_OPTIONS.has(optionName)) {
		checkBooleanOption(optionValue, fullOptionName);
	} else if (optionName === 'maxBuffer' && optionValue !== undefined && (typeof optionValue !== 'number' || Number.isNaN(optionValue))) {
		throw new TypeError(`The \`${fullOptionName}\` option must use a number.`);
	}
};

// Default value for the `verbose` option
const verboseDefault = (0,external_node_util_namespaceObject.debuglog)('execa').enabled ? 'full' : 'none';

const DEFAULT_OPTIONS = {
	lines: false,
	buffer: true,
	maxBuffer: 1000 * 1000 * 100,
	verbose: verboseDefault,
	stripFinalNewline: true,
};

// List of options which can have different values for `stdout`/`stderr`
const FD_SPECIFIC_OPTIONS = ['lines', 'buffer', 'maxBuffer', 'verbose', 'stripFinalNewline'];

// Retrieve fd-specific option
const getFdSpecificValue = (optionArray, fdNumber) => fdNumber === 'ipc'
	? optionArray.at(-1)
	: optionArray[fdNumber];

;// CONCATENATED MODULE: ./node_modules/execa/lib/verbose/values.js


// The `verbose` option can have different values for `stdout`/`stderr`
const isVerbose = ({verbose}, fdNumber) => getFdVerbose(verbose, fdNumber) !== 'none';

// Whether IPC and output and logged
const isFullVerbose = ({verbose}, fdNumber) => !['none', 'short'].includes(getFdVerbose(verbose, fdNumber));

// The `verbose` option can be a function to customize logging
const getVerboseFunction = ({verbose}, fdNumber) => {
	const fdVerbose = getFdVerbose(verbose, fdNumber);
	return isVerboseFunction(fdVerbose) ? fdVerbose : undefined;
};

// When using `verbose: {stdout, stderr, fd3, ipc}`:
//  - `verbose.stdout|stderr|fd3` is used for 'output'
//  - `verbose.ipc` is only used for 'ipc'
//  - highest `verbose.*` value is used for 'command', 'error' and 'duration'
const getFdVerbose = (verbose, fdNumber) => fdNumber === undefined
	? getFdGenericVerbose(verbose)
	: getFdSpecificValue(verbose, fdNumber);

// When using `verbose: {stdout, stderr, fd3, ipc}` and logging is not specific to a file descriptor.
// We then use the highest `verbose.*` value, using the following order:
//  - function > 'full' > 'short' > 'none'
//  - if several functions are defined: stdout > stderr > fd3 > ipc
const getFdGenericVerbose = verbose => verbose.find(fdVerbose => isVerboseFunction(fdVerbose))
	?? VERBOSE_VALUES.findLast(fdVerbose => verbose.includes(fdVerbose));

// Whether the `verbose` option is customized using a function
const isVerboseFunction = fdVerbose => typeof fdVerbose === 'function';

const VERBOSE_VALUES = ['none', 'short', 'full'];

;// CONCATENATED MODULE: ./node_modules/is-unicode-supported/index.js


function isUnicodeSupported() {
	const {env} = external_node_process_namespaceObject;
	const {TERM, TERM_PROGRAM} = env;

	if (external_node_process_namespaceObject.platform !== 'win32') {
		return TERM !== 'linux'; // Linux console (kernel)
	}

	return Boolean(env.WT_SESSION) // Windows Terminal
		|| Boolean(env.TERMINUS_SUBLIME) // Terminus (<0.2.27)
		|| env.ConEmuTask === '{cmd::Cmder}' // ConEmu and cmder
		|| TERM_PROGRAM === 'Terminus-Sublime'
		|| TERM_PROGRAM === 'vscode'
		|| TERM === 'xterm-256color'
		|| TERM === 'alacritty'
		|| TERM === 'rxvt-unicode'
		|| TERM === 'rxvt-unicode-256color'
		|| env.TERMINAL_EMULATOR === 'JetBrains-JediTerm';
}

;// CONCATENATED MODULE: ./node_modules/figures/index.js


const common = {
	circleQuestionMark: '(?)',
	questionMarkPrefix: '(?)',
	square: '█',
	squareDarkShade: '▓',
	squareMediumShade: '▒',
	squareLightShade: '░',
	squareTop: '▀',
	squareBottom: '▄',
	squareLeft: '▌',
	squareRight: '▐',
	squareCenter: '■',
	bullet: '●',
	dot: '․',
	ellipsis: '…',
	pointerSmall: '›',
	triangleUp: '▲',
	triangleUpSmall: '▴',
	triangleDown: '▼',
	triangleDownSmall: '▾',
	triangleLeftSmall: '◂',
	triangleRightSmall: '▸',
	home: '⌂',
	heart: '♥',
	musicNote: '♪',
	musicNoteBeamed: '♫',
	arrowUp: '↑',
	arrowDown: '↓',
	arrowLeft: '←',
	arrowRight: '→',
	arrowLeftRight: '↔',
	arrowUpDown: '↕',
	almostEqual: '≈',
	notEqual: '≠',
	lessOrEqual: '≤',
	greaterOrEqual: '≥',
	identical: '≡',
	infinity: '∞',
	subscriptZero: '₀',
	subscriptOne: '₁',
	subscriptTwo: '₂',
	subscriptThree: '₃',
	subscriptFour: '₄',
	subscriptFive: '₅',
	subscriptSix: '₆',
	subscriptSeven: '₇',
	subscriptEight: '₈',
	subscriptNine: '₉',
	oneHalf: '½',
	oneThird: '⅓',
	oneQuarter: '¼',
	oneFifth: '⅕',
	oneSixth: '⅙',
	oneEighth: '⅛',
	twoThirds: '⅔',
	twoFifths: '⅖',
	threeQuarters: '¾',
	threeFifths: '⅗',
	threeEighths: '⅜',
	fourFifths: '⅘',
	fiveSixths: '⅚',
	fiveEighths: '⅝',
	sevenEighths: '⅞',
	line: '─',
	lineBold: '━',
	lineDouble: '═',
	lineDashed0: '┄',
	lineDashed1: '┅',
	lineDashed2: '┈',
	lineDashed3: '┉',
	lineDashed4: '╌',
	lineDashed5: '╍',
	lineDashed6: '╴',
	lineDashed7: '╶',
	lineDashed8: '╸',
	lineDashed9: '╺',
	lineDashed10: '╼',
	lineDashed11: '╾',
	lineDashed12: '−',
	lineDashed13: '–',
	lineDashed14: '‐',
	lineDashed15: '⁃',
	lineVertical: '│',
	lineVerticalBold: '┃',
	lineVerticalDouble: '║',
	lineVerticalDashed0: '┆',
	lineVerticalDashed1: '┇',
	lineVerticalDashed2: '┊',
	lineVerticalDashed3: '┋',
	lineVerticalDashed4: '╎',
	lineVerticalDashed5: '╏',
	lineVerticalDashed6: '╵',
	lineVerticalDashed7: '╷',
	lineVerticalDashed8: '╹',
	lineVerticalDashed9: '╻',
	lineVerticalDashed10: '╽',
	lineVerticalDashed11: '╿',
	lineDownLeft: '┐',
	lineDownLeftArc: '╮',
	lineDownBoldLeftBold: '┓',
	lineDownBoldLeft: '┒',
	lineDownLeftBold: '┑',
	lineDownDoubleLeftDouble: '╗',
	lineDownDoubleLeft: '╖',
	lineDownLeftDouble: '╕',
	lineDownRight: '┌',
	lineDownRightArc: '╭',
	lineDownBoldRightBold: '┏',
	lineDownBoldRight: '┎',
	lineDownRightBold: '┍',
	lineDownDoubleRightDouble: '╔',
	lineDownDoubleRight: '╓',
	lineDownRightDouble: '╒',
	lineUpLeft: '┘',
	lineUpLeftArc: '╯',
	lineUpBoldLeftBold: '┛',
	lineUpBoldLeft: '┚',
	lineUpLeftBold: '┙',
	lineUpDoubleLeftDouble: '╝',
	lineUpDoubleLeft: '╜',
	lineUpLeftDouble: '╛',
	lineUpRight: '└',
	lineUpRightArc: '╰',
	lineUpBoldRightBold: '┗',
	lineUpBoldRight: '┖',
	lineUpRightBold: '┕',
	lineUpDoubleRightDouble: '╚',
	lineUpDoubleRight: '╙',
	lineUpRightDouble: '╘',
	lineUpDownLeft: '┤',
	lineUpBoldDownBoldLeftBold: '┫',
	lineUpBoldDownBoldLeft: '┨',
	lineUpDownLeftBold: '┥',
	lineUpBoldDownLeftBold: '┩',
	lineUpDownBoldLeftBold: '┪',
	lineUpDownBoldLeft: '┧',
	lineUpBoldDownLeft: '┦',
	lineUpDoubleDownDoubleLeftDouble: '╣',
	lineUpDoubleDownDoubleLeft: '╢',
	lineUpDownLeftDouble: '╡',
	lineUpDownRight: '├',
	lineUpBoldDownBoldRightBold: '┣',
	lineUpBoldDownBoldRight: '┠',
	lineUpDownRightBold: '┝',
	lineUpBoldDownRightBold: '┡',
	lineUpDownBoldRightBold: '┢',
	lineUpDownBoldRight: '┟',
	lineUpBoldDownRight: '┞',
	lineUpDoubleDownDoubleRightDouble: '╠',
	lineUpDoubleDownDoubleRight: '╟',
	lineUpDownRightDouble: '╞',
	lineDownLeftRight: '┬',
	lineDownBoldLeftBoldRightBold: '┳',
	lineDownLeftBoldRightBold: '┯',
	lineDownBoldLeftRight: '┰',
	lineDownBoldLeftBoldRight: '┱',
	lineDownBoldLeftRightBold: '┲',
	lineDownLeftRightBold: '┮',
	lineDownLeftBoldRight: '┭',
	lineDownDoubleLeftDoubleRightDouble: '╦',
	lineDownDoubleLeftRight: '╥',
	lineDownLeftDoubleRightDouble: '╤',
	lineUpLeftRight: '┴',
	lineUpBoldLeftBoldRightBold: '┻',
	lineUpLeftBoldRightBold: '┷',
	lineUpBoldLeftRight: '┸',
	lineUpBoldLeftBoldRight: '┹',
	lineUpBoldLeftRightBold: '┺',
	lineUpLeftRightBold: '┶',
	lineUpLeftBoldRight: '┵',
	lineUpDoubleLeftDoubleRightDouble: '╩',
	lineUpDoubleLeftRight: '╨',
	lineUpLeftDoubleRightDouble: '╧',
	lineUpDownLeftRight: '┼',
	lineUpBoldDownBoldLeftBoldRightBold: '╋',
	lineUpDownBoldLeftBoldRightBold: '╈',
	lineUpBoldDownLeftBoldRightBold: '╇',
	lineUpBoldDownBoldLeftRightBold: '╊',
	lineUpBoldDownBoldLeftBoldRight: '╉',
	lineUpBoldDownLeftRight: '╀',
	lineUpDownBoldLeftRight: '╁',
	lineUpDownLeftBoldRight: '┽',
	lineUpDownLeftRightBold: '┾',
	lineUpBoldDownBoldLeftRight: '╂',
	lineUpDownLeftBoldRightBold: '┿',
	lineUpBoldDownLeftBoldRight: '╃',
	lineUpBoldDownLeftRightBold: '╄',
	lineUpDownBoldLeftBoldRight: '╅',
	lineUpDownBoldLeftRightBold: '╆',
	lineUpDoubleDownDoubleLeftDoubleRightDouble: '╬',
	lineUpDoubleDownDoubleLeftRight: '╫',
	lineUpDownLeftDoubleRightDouble: '╪',
	lineCross: '╳',
	lineBackslash: '╲',
	lineSlash: '╱',
};

const specialMainSymbols = {
	tick: '✔',
	info: 'ℹ',
	warning: '⚠',
	cross: '✘',
	squareSmall: '◻',
	squareSmallFilled: '◼',
	circle: '◯',
	circleFilled: '◉',
	circleDotted: '◌',
	circleDouble: '◎',
	circleCircle: 'ⓞ',
	circleCross: 'ⓧ',
	circlePipe: 'Ⓘ',
	radioOn: '◉',
	radioOff: '◯',
	checkboxOn: '☒',
	checkboxOff: '☐',
	checkboxCircleOn: 'ⓧ',
	checkboxCircleOff: 'Ⓘ',
	pointer: '❯',
	triangleUpOutline: '△',
	triangleLeft: '◀',
	triangleRight: '▶',
	lozenge: '◆',
	lozengeOutline: '◇',
	hamburger: '☰',
	smiley: '㋡',
	mustache: '෴',
	star: '★',
	play: '▶',
	nodejs: '⬢',
	oneSeventh: '⅐',
	oneNinth: '⅑',
	oneTenth: '⅒',
};

const specialFallbackSymbols = {
	tick: '√',
	info: 'i',
	warning: '‼',
	cross: '×',
	squareSmall: '□',
	squareSmallFilled: '■',
	circle: '( )',
	circleFilled: '(*)',
	circleDotted: '( )',
	circleDouble: '( )',
	circleCircle: '(○)',
	circleCross: '(×)',
	circlePipe: '(│)',
	radioOn: '(*)',
	radioOff: '( )',
	checkboxOn: '[×]',
	checkboxOff: '[ ]',
	checkboxCircleOn: '(×)',
	checkboxCircleOff: '( )',
	pointer: '>',
	triangleUpOutline: '∆',
	triangleLeft: '◄',
	triangleRight: '►',
	lozenge: '♦',
	lozengeOutline: '◊',
	hamburger: '≡',
	smiley: '☺',
	mustache: '┌─┐',
	star: '✶',
	play: '►',
	nodejs: '♦',
	oneSeventh: '1/7',
	oneNinth: '1/9',
	oneTenth: '1/10',
};

const mainSymbols = {...common, ...specialMainSymbols};
const fallbackSymbols = {...common, ...specialFallbackSymbols};

const shouldUseMain = isUnicodeSupported();
const figures = shouldUseMain ? mainSymbols : fallbackSymbols;
/* harmony default export */ const node_modules_figures = (figures);

const replacements = Object.entries(specialMainSymbols);

// On terminals which do not support Unicode symbols, substitute them to other symbols
const replaceSymbols = (string, {useFallback = !shouldUseMain} = {}) => {
	if (useFallback) {
		for (const [key, mainSymbol] of replacements) {
			string = string.replaceAll(mainSymbol, fallbackSymbols[key]);
		}
	}

	return string;
};

;// CONCATENATED MODULE: external "node:tty"
const external_node_tty_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:tty");
;// CONCATENATED MODULE: ./node_modules/yoctocolors/base.js


// eslint-disable-next-line no-warning-comments
// TODO: Use a better method when it's added to Node.js (https://github.com/nodejs/node/pull/40240)
// Lots of optionals here to support Deno.
const hasColors = external_node_tty_namespaceObject?.WriteStream?.prototype?.hasColors?.() ?? false;

const format = (open, close) => {
	if (!hasColors) {
		return input => input;
	}

	const openCode = `\u001B[${open}m`;
	const closeCode = `\u001B[${close}m`;

	return input => {
		const string = input + ''; // eslint-disable-line no-implicit-coercion -- This is faster.
		let index = string.indexOf(closeCode);

		if (index === -1) {
			// Note: Intentionally not using string interpolation for performance reasons.
			return openCode + string + closeCode;
		}

		// Handle nested colors.

		// We could have done this, but it's too slow (as of Node.js 22).
		// return openCode + string.replaceAll(closeCode, (close === 22 ? closeCode : '') + openCode) + closeCode;

		let result = openCode;
		let lastIndex = 0;

		// SGR 22 resets both bold (1) and dim (2). When we encounter a nested
		// close for styles that use 22, we need to re-open the outer style.
		const reopenOnNestedClose = close === 22;
		const replaceCode = (reopenOnNestedClose ? closeCode : '') + openCode;

		while (index !== -1) {
			result += string.slice(lastIndex, index) + replaceCode;
			lastIndex = index + closeCode.length;
			index = string.indexOf(closeCode, lastIndex);
		}

		result += string.slice(lastIndex) + closeCode;

		return result;
	};
};

const base_reset = format(0, 0);
const bold = format(1, 22);
const dim = format(2, 22);
const italic = format(3, 23);
const underline = format(4, 24);
// Extended underline styles (`SGR 4:x` sub-parameters).
const underlineDouble = format('4:2', 24);
const underlineCurly = format('4:3', 24);
const underlineDotted = format('4:4', 24);
const underlineDashed = format('4:5', 24);
const overline = format(53, 55);
const inverse = format(7, 27);
const base_hidden = format(8, 28);
const strikethrough = format(9, 29);

const black = format(30, 39);
const red = format(31, 39);
const green = format(32, 39);
const yellow = format(33, 39);
const blue = format(34, 39);
const magenta = format(35, 39);
const cyan = format(36, 39);
const white = format(37, 39);
const gray = format(90, 39);

const bgBlack = format(40, 49);
const bgRed = format(41, 49);
const bgGreen = format(42, 49);
const bgYellow = format(43, 49);
const bgBlue = format(44, 49);
const bgMagenta = format(45, 49);
const bgCyan = format(46, 49);
const bgWhite = format(47, 49);
const bgGray = format(100, 49);

const redBright = format(91, 39);
const greenBright = format(92, 39);
const yellowBright = format(93, 39);
const blueBright = format(94, 39);
const magentaBright = format(95, 39);
const cyanBright = format(96, 39);
const whiteBright = format(97, 39);

const bgRedBright = format(101, 49);
const bgGreenBright = format(102, 49);
const bgYellowBright = format(103, 49);
const bgBlueBright = format(104, 49);
const bgMagentaBright = format(105, 49);
const bgCyanBright = format(106, 49);
const bgWhiteBright = format(107, 49);

// Underline color (`SGR 58`/`59`). It has no basic 16-color form, so the palette index is used.
const underlineBlack = format('58;5;0', 59);
const underlineRed = format('58;5;1', 59);
const underlineGreen = format('58;5;2', 59);
const underlineYellow = format('58;5;3', 59);
const underlineBlue = format('58;5;4', 59);
const underlineMagenta = format('58;5;5', 59);
const underlineCyan = format('58;5;6', 59);
const underlineWhite = format('58;5;7', 59);
const underlineGray = format('58;5;8', 59);

const underlineRedBright = format('58;5;9', 59);
const underlineGreenBright = format('58;5;10', 59);
const underlineYellowBright = format('58;5;11', 59);
const underlineBlueBright = format('58;5;12', 59);
const underlineMagentaBright = format('58;5;13', 59);
const underlineCyanBright = format('58;5;14', 59);
const underlineWhiteBright = format('58;5;15', 59);

;// CONCATENATED MODULE: ./node_modules/execa/lib/verbose/default.js




// `yoctocolors` checks whether the terminal type supports colors, but not whether `stderr`, where this is printed, is a terminal.
// Like `util.styleText()`, colors are not used when `stderr` is redirected, e.g. to a file, unless `FORCE_COLOR` is set.
const default_hasColors = external_node_process_namespaceObject.env.FORCE_COLOR !== undefined || external_node_process_namespaceObject.stderr.isTTY === true;
const identity = string => string;
const getColor = color => default_hasColors ? color : identity;
const default_gray = getColor(gray);
const default_bold = getColor(bold);
const default_redBright = getColor(redBright);
const default_yellowBright = getColor(yellowBright);

// Default when `verbose` is not a function
const defaultVerboseFunction = ({
	type,
	message,
	timestamp,
	piped,
	commandId,
	result: {failed = false} = {},
	options: {reject = true},
}) => {
	const timestampString = serializeTimestamp(timestamp);
	const icon = ICONS[type]({failed, reject, piped});
	const color = COLORS[type]({reject});
	return `${default_gray(`[${timestampString}]`)} ${default_gray(`[${commandId}]`)} ${color(icon)} ${color(message)}`;
};

// Prepending the timestamp allows debugging the slow paths of a subprocess
const serializeTimestamp = timestamp => `${padField(timestamp.getHours(), 2)}:${padField(timestamp.getMinutes(), 2)}:${padField(timestamp.getSeconds(), 2)}.${padField(timestamp.getMilliseconds(), 3)}`;

const padField = (field, padding) => String(field).padStart(padding, '0');

const getFinalIcon = ({failed, reject}) => {
	if (!failed) {
		return node_modules_figures.tick;
	}

	return reject ? node_modules_figures.cross : node_modules_figures.warning;
};

const ICONS = {
	command: ({piped}) => piped ? '|' : '$',
	output: () => ' ',
	ipc: () => '*',
	error: getFinalIcon,
	duration: getFinalIcon,
};

const COLORS = {
	command: () => default_bold,
	output: () => identity,
	ipc: () => identity,
	error: ({reject}) => reject ? default_redBright : default_yellowBright,
	duration: () => default_gray,
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/verbose/custom.js


// Apply the `verbose` function on each line
const applyVerboseOnLines = (printedLines, verboseInfo, fdNumber) => {
	const verboseFunction = getVerboseFunction(verboseInfo, fdNumber);
	return printedLines
		.map(({verboseLine, verboseObject}) => applyVerboseFunction(verboseLine, verboseObject, verboseFunction))
		.filter(printedLine => printedLine !== undefined)
		.map(printedLine => appendNewline(printedLine))
		.join('');
};

const applyVerboseFunction = (verboseLine, verboseObject, verboseFunction) => {
	if (verboseFunction === undefined) {
		return verboseLine;
	}

	const printedLine = verboseFunction(verboseLine, verboseObject);
	if (typeof printedLine === 'string') {
		return printedLine;
	}
};

const appendNewline = printedLine => printedLine.endsWith('\n')
	? printedLine
	: `${printedLine}\n`;

;// CONCATENATED MODULE: ./node_modules/execa/lib/verbose/log.js





// This prints on stderr.
// If the subprocess prints on stdout and is using `stdout: 'inherit'`,
// there is a chance both writes will compete (introducing a race condition).
// This means their respective order is not deterministic.
// In particular, this means the verbose command lines might be after the start of the subprocess output.
// Using synchronous I/O does not solve this problem.
// However, this only seems to happen when the stdout/stderr target
// (e.g. a terminal) is being written to by many subprocesses at once, which is unlikely in real scenarios.
const verboseLog = ({type, verboseMessage, fdNumber, verboseInfo, result}) => {
	const verboseObject = getVerboseObject({type, result, verboseInfo});
	const printedLines = getPrintedLines(verboseMessage, verboseObject);
	const finalLines = applyVerboseOnLines(printedLines, verboseInfo, fdNumber);
	if (finalLines !== '') {
		console.warn(finalLines.slice(0, -1));
	}
};

const getVerboseObject = ({type, result, verboseInfo}) => {
	const {escapedCommand, commandId, rawOptions} = verboseInfo;
	const {piped = false, ...options} = rawOptions;
	return {
		type,
		escapedCommand,
		commandId: `${commandId}`,
		timestamp: new Date(),
		piped,
		result,
		options,
	};
};

const getPrintedLines = (verboseMessage, verboseObject) => verboseMessage
	.split('\n')
	.map(message => getPrintedLine({...verboseObject, message}));

const getPrintedLine = verboseObject => {
	const verboseLine = defaultVerboseFunction(verboseObject);
	return {verboseLine, verboseObject};
};

// Serialize any type to a line string, for logging.
// Tabs are escaped by `escapeLines()`, like any other control character.
const serializeVerboseMessage = message => {
	const messageString = typeof message === 'string' ? message : (0,external_node_util_namespaceObject.inspect)(message);
	return escapeLines(messageString);
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/verbose/start.js



// When `verbose` is `short|full|custom`, print each command
const logCommand = (escapedCommand, verboseInfo) => {
	if (!isVerbose(verboseInfo)) {
		return;
	}

	verboseLog({
		type: 'command',
		verboseMessage: escapedCommand,
		verboseInfo,
	});
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/verbose/info.js


// Information computed before spawning, used by the `verbose` option
const getVerboseInfo = (verbose, escapedCommand, rawOptions) => {
	validateVerbose(verbose);
	const commandId = getCommandId(verbose);
	return {
		verbose,
		escapedCommand,
		commandId,
		rawOptions,
	};
};

const getCommandId = verbose => isVerbose({verbose}) ? COMMAND_ID++ : undefined;

// Prepending the `pid` is useful when multiple commands print their output at the same time.
// However, we cannot use the real PID since this is not available with `child_process.spawnSync()`.
// Also, we cannot use the real PID if we want to print it before `child_process.spawn()` is run.
// As a pro, it is shorter than a normal PID and never re-uses the same id.
// As a con, it cannot be used to send signals.
let COMMAND_ID = 0n;

const validateVerbose = verbose => {
	for (const fdVerbose of verbose) {
		if (fdVerbose === false) {
			throw new TypeError('The "verbose: false" option was renamed to "verbose: \'none\'".');
		}

		if (fdVerbose === true) {
			throw new TypeError('The "verbose: true" option was renamed to "verbose: \'short\'".');
		}

		if (!VERBOSE_VALUES.includes(fdVerbose) && !isVerboseFunction(fdVerbose)) {
			const allowedValues = VERBOSE_VALUES.map(allowedValue => `'${allowedValue}'`).join(', ');
			throw new TypeError(`The "verbose" option must not be ${fdVerbose}. Allowed values are: ${allowedValues} or a function.`);
		}
	}
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/return/duration.js


// Start counting time before spawning the subprocess
const getStartTime = () => external_node_process_namespaceObject.hrtime.bigint();

// Compute duration after the subprocess ended.
// Printed by the `verbose` option.
const getDurationMs = startTime => Number(external_node_process_namespaceObject.hrtime.bigint() - startTime) / 1e6;

;// CONCATENATED MODULE: ./node_modules/execa/lib/arguments/command.js






// Compute `result.command`, `result.escapedCommand` and `verbose`-related information
const handleCommand = (filePath, rawArguments, rawOptions) => {
	const startTime = getStartTime();
	// The `node` option ignores `shell`
	const {command, escapedCommand} = joinCommand(filePath, rawArguments, rawOptions.shell && !rawOptions.node);
	const verbose = normalizeFdSpecificOption(rawOptions, 'verbose');
	// Keep the null prototype, otherwise a polluted `Object.prototype` would inject option values
	const verboseInfo = getVerboseInfo(verbose, escapedCommand, {__proto__: null, ...rawOptions});
	logCommand(escapedCommand, verboseInfo);
	return {
		command,
		escapedCommand,
		startTime,
		verboseInfo,
	};
};

;// CONCATENATED MODULE: ./node_modules/npm-run-path/node_modules/path-key/index.js
function pathKey(options = {}) {
	const {
		env = process.env,
		platform = process.platform
	} = options;

	if (platform !== 'win32') {
		return 'PATH';
	}

	return Object.keys(env).reverse().find(key => key.toUpperCase() === 'PATH') || 'Path';
}

;// CONCATENATED MODULE: ./node_modules/unicorn-magic/node.js





const execFileOriginal = (0,external_node_util_namespaceObject.promisify)(external_node_child_process_namespaceObject.execFile);

function toPath(urlOrPath) {
	return urlOrPath instanceof URL ? (0,external_node_url_namespaceObject.fileURLToPath)(urlOrPath) : urlOrPath;
}

function rootDirectory(pathInput) {
	return path.parse(toPath(pathInput)).root;
}

function traversePathUp(startPath) {
	return {
		* [Symbol.iterator]() {
			let currentPath = external_node_path_namespaceObject.resolve(toPath(startPath));
			let previousPath;

			while (previousPath !== currentPath) {
				yield currentPath;
				previousPath = currentPath;
				currentPath = external_node_path_namespaceObject.resolve(currentPath, '..');
			}
		},
	};
}

const TEN_MEGABYTES_IN_BYTES = (/* unused pure expression or super */ null && (10 * 1024 * 1024));

async function execFile(file, arguments_, options = {}) {
	return execFileOriginal(file, arguments_, {
		maxBuffer: TEN_MEGABYTES_IN_BYTES,
		...options,
	});
}

function execFileSync(file, arguments_ = [], options = {}) {
	return execFileSyncOriginal(file, arguments_, {
		maxBuffer: TEN_MEGABYTES_IN_BYTES,
		encoding: 'utf8',
		stdio: 'pipe',
		...options,
	});
}



;// CONCATENATED MODULE: ./node_modules/npm-run-path/index.js





const npmRunPath = ({
	cwd = external_node_process_namespaceObject.cwd(),
	path: pathOption = external_node_process_namespaceObject.env[pathKey()],
	preferLocal = true,
	execPath = external_node_process_namespaceObject.execPath,
	addExecPath = true,
} = {}) => {
	const cwdPath = external_node_path_namespaceObject.resolve(toPath(cwd));
	const result = [];
	const pathParts = pathOption.split(external_node_path_namespaceObject.delimiter);

	if (preferLocal) {
		applyPreferLocal(result, pathParts, cwdPath);
	}

	if (addExecPath) {
		applyExecPath(result, pathParts, execPath, cwdPath);
	}

	return pathOption === '' || pathOption === external_node_path_namespaceObject.delimiter
		? `${result.join(external_node_path_namespaceObject.delimiter)}${pathOption}`
		: [...result, pathOption].join(external_node_path_namespaceObject.delimiter);
};

const applyPreferLocal = (result, pathParts, cwdPath) => {
	for (const directory of traversePathUp(cwdPath)) {
		const pathPart = external_node_path_namespaceObject.join(directory, 'node_modules/.bin');
		if (!pathParts.includes(pathPart)) {
			result.push(pathPart);
		}
	}
};

// Ensure the running `node` binary is used
const applyExecPath = (result, pathParts, execPath, cwdPath) => {
	const pathPart = external_node_path_namespaceObject.resolve(cwdPath, toPath(execPath), '..');
	if (!pathParts.includes(pathPart)) {
		result.push(pathPart);
	}
};

const npmRunPathEnv = ({env = external_node_process_namespaceObject.env, ...options} = {}) => {
	env = {...env};

	const pathName = pathKey({env});
	options.path = env[pathName];
	env[pathName] = npmRunPath(options);

	return env;
};

;// CONCATENATED MODULE: external "node:timers/promises"
const promises_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:timers/promises");
;// CONCATENATED MODULE: ./node_modules/human-signals/build/src/realtime.js

const getRealtimeSignals=()=>{
const length=SIGRTMAX-SIGRTMIN+1;
return Array.from({length},getRealtimeSignal)
};

const getRealtimeSignal=(value,index)=>({
name:`SIGRT${index+1}`,
number:SIGRTMIN+index,
action:"terminate",
description:"Application-specific signal (realtime)",
standard:"posix"
});

const SIGRTMIN=34;
const SIGRTMAX=64;
;// CONCATENATED MODULE: ./node_modules/human-signals/build/src/core.js


const SIGNALS=[
{
name:"SIGHUP",
number:1,
action:"terminate",
description:"Terminal closed",
standard:"posix"
},
{
name:"SIGINT",
number:2,
action:"terminate",
description:"User interruption with CTRL-C",
standard:"ansi"
},
{
name:"SIGQUIT",
number:3,
action:"core",
description:"User interruption with CTRL-\\",
standard:"posix"
},
{
name:"SIGILL",
number:4,
action:"core",
description:"Invalid machine instruction",
standard:"ansi"
},
{
name:"SIGTRAP",
number:5,
action:"core",
description:"Debugger breakpoint",
standard:"posix"
},
{
name:"SIGABRT",
number:6,
action:"core",
description:"Aborted",
standard:"ansi"
},
{
name:"SIGIOT",
number:6,
action:"core",
description:"Aborted",
standard:"bsd"
},
{
name:"SIGBUS",
number:7,
action:"core",
description:
"Bus error due to misaligned, non-existing address or paging error",
standard:"bsd"
},
{
name:"SIGEMT",
number:7,
action:"terminate",
description:"Command should be emulated but is not implemented",
standard:"other"
},
{
name:"SIGFPE",
number:8,
action:"core",
description:"Floating point arithmetic error",
standard:"ansi"
},
{
name:"SIGKILL",
number:9,
action:"terminate",
description:"Forced termination",
standard:"posix",
forced:true
},
{
name:"SIGUSR1",
number:10,
action:"terminate",
description:"Application-specific signal",
standard:"posix"
},
{
name:"SIGSEGV",
number:11,
action:"core",
description:"Segmentation fault",
standard:"ansi"
},
{
name:"SIGUSR2",
number:12,
action:"terminate",
description:"Application-specific signal",
standard:"posix"
},
{
name:"SIGPIPE",
number:13,
action:"terminate",
description:"Broken pipe or socket",
standard:"posix"
},
{
name:"SIGALRM",
number:14,
action:"terminate",
description:"Timeout or timer",
standard:"posix"
},
{
name:"SIGTERM",
number:15,
action:"terminate",
description:"Termination",
standard:"ansi"
},
{
name:"SIGSTKFLT",
number:16,
action:"terminate",
description:"Stack is empty or overflowed",
standard:"other"
},
{
name:"SIGCHLD",
number:17,
action:"ignore",
description:"Child process terminated, paused or unpaused",
standard:"posix"
},
{
name:"SIGCLD",
number:17,
action:"ignore",
description:"Child process terminated, paused or unpaused",
standard:"other"
},
{
name:"SIGCONT",
number:18,
action:"unpause",
description:"Unpaused",
standard:"posix",
forced:true
},
{
name:"SIGSTOP",
number:19,
action:"pause",
description:"Paused",
standard:"posix",
forced:true
},
{
name:"SIGTSTP",
number:20,
action:"pause",
description:"Paused using CTRL-Z or \"suspend\"",
standard:"posix"
},
{
name:"SIGTTIN",
number:21,
action:"pause",
description:"Background process cannot read terminal input",
standard:"posix"
},
{
name:"SIGBREAK",
number:21,
action:"terminate",
description:"User interruption with CTRL-BREAK",
standard:"other"
},
{
name:"SIGTTOU",
number:22,
action:"pause",
description:"Background process cannot write to terminal output",
standard:"posix"
},
{
name:"SIGURG",
number:23,
action:"ignore",
description:"Socket received out-of-band data",
standard:"bsd"
},
{
name:"SIGXCPU",
number:24,
action:"core",
description:"Process timed out",
standard:"bsd"
},
{
name:"SIGXFSZ",
number:25,
action:"core",
description:"File too big",
standard:"bsd"
},
{
name:"SIGVTALRM",
number:26,
action:"terminate",
description:"Timeout or timer",
standard:"bsd"
},
{
name:"SIGPROF",
number:27,
action:"terminate",
description:"Timeout or timer",
standard:"bsd"
},
{
name:"SIGWINCH",
number:28,
action:"ignore",
description:"Terminal window size changed",
standard:"bsd"
},
{
name:"SIGIO",
number:29,
action:"terminate",
description:"I/O is available",
standard:"other"
},
{
name:"SIGPOLL",
number:29,
action:"terminate",
description:"Watched event",
standard:"other"
},
{
name:"SIGINFO",
number:29,
action:"ignore",
description:"Request for process information",
standard:"other"
},
{
name:"SIGPWR",
number:30,
action:"terminate",
description:"Device running out of power",
standard:"systemv"
},
{
name:"SIGSYS",
number:31,
action:"core",
description:"Invalid system call",
standard:"other"
},
{
name:"SIGUNUSED",
number:31,
action:"terminate",
description:"Invalid system call",
standard:"other"
}];
;// CONCATENATED MODULE: ./node_modules/human-signals/build/src/signals.js







const getSignals=()=>{
const realtimeSignals=getRealtimeSignals();
const signals=[...SIGNALS,...realtimeSignals].map(normalizeSignal);
return signals
};







const normalizeSignal=({
name,
number:defaultNumber,
description,
action,
forced=false,
standard
})=>{
const{
signals:{[name]:constantSignal}
}=external_node_os_namespaceObject.constants;
const supported=constantSignal!==undefined;
const number=supported?constantSignal:defaultNumber;
return{name,number,description,supported,action,forced,standard}
};
;// CONCATENATED MODULE: ./node_modules/human-signals/build/src/main.js







const getSignalsByName=()=>{
const signals=getSignals();
return Object.fromEntries(signals.map(getSignalByName))
};

const getSignalByName=({
name,
number,
description,
supported,
action,
forced,
standard
})=>[name,{name,number,description,supported,action,forced,standard}];

const signalsByName=getSignalsByName();




const getSignalsByNumber=()=>{
const signals=getSignals();
const length=SIGRTMAX+1;
const signalsA=Array.from({length},(value,number)=>
getSignalByNumber(number,signals)
);
return Object.assign({},...signalsA)
};

const getSignalByNumber=(number,signals)=>{
const signal=findSignalByNumber(number,signals);

if(signal===undefined){
return{}
}

const{name,description,supported,action,forced,standard}=signal;
return{
[number]:{
name,
number,
description,
supported,
action,
forced,
standard
}
}
};



const findSignalByNumber=(number,signals)=>{
const signal=signals.find(({name})=>external_node_os_namespaceObject.constants.signals[name]===number);

if(signal!==undefined){
return signal
}

return signals.find((signalA)=>signalA.number===number)
};

const signalsByNumber=getSignalsByNumber();
;// CONCATENATED MODULE: ./node_modules/execa/lib/terminate/signal.js



// Normalize signals for comparison purpose.
// Also validate the signal exists.
const normalizeKillSignal = killSignal => {
	const optionName = 'option `killSignal`';
	if (killSignal === 0) {
		throw new TypeError(`Invalid ${optionName}: 0 cannot be used.`);
	}

	return signal_normalizeSignal(killSignal, optionName);
};

const normalizeSignalArgument = signal => signal === 0
	? signal
	: signal_normalizeSignal(signal, '`subprocess.kill()`\'s argument');

const signal_normalizeSignal = (signalNameOrInteger, optionName) => {
	if (Number.isInteger(signalNameOrInteger)) {
		return normalizeSignalInteger(signalNameOrInteger, optionName);
	}

	if (typeof signalNameOrInteger === 'string') {
		return normalizeSignalName(signalNameOrInteger, optionName);
	}

	throw new TypeError(`Invalid ${optionName} ${String(signalNameOrInteger)}: it must be a string or an integer.\n${getAvailableSignals()}`);
};

const normalizeSignalInteger = (signalInteger, optionName) => {
	if (signalsIntegerToName.has(signalInteger)) {
		return signalsIntegerToName.get(signalInteger);
	}

	throw new TypeError(`Invalid ${optionName} ${signalInteger}: this signal integer does not exist.\n${getAvailableSignals()}`);
};

const getSignalsIntegerToName = () => new Map(Object.entries(external_node_os_namespaceObject.constants.signals)
	.reverse()
	.map(([signalName, signalInteger]) => [signalInteger, signalName]));

const signalsIntegerToName = getSignalsIntegerToName();

const normalizeSignalName = (signalName, optionName) => {
	if (signalName in external_node_os_namespaceObject.constants.signals) {
		return signalName;
	}

	if (signalName.toUpperCase() in external_node_os_namespaceObject.constants.signals) {
		throw new TypeError(`Invalid ${optionName} '${signalName}': please rename it to '${signalName.toUpperCase()}'.`);
	}

	throw new TypeError(`Invalid ${optionName} '${signalName}': this signal name does not exist.\n${getAvailableSignals()}`);
};

const getAvailableSignals = () => `Available signal names: ${getAvailableSignalNames()}.
Available signal numbers: ${getAvailableSignalIntegers()}.`;

const getAvailableSignalNames = () => Object.keys(external_node_os_namespaceObject.constants.signals)
	.sort()
	.map(signalName => `'${signalName}'`)
	.join(', ');

const getAvailableSignalIntegers = () => [...new Set(Object.values(external_node_os_namespaceObject.constants.signals)
	.sort((signalInteger, signalIntegerTwo) => signalInteger - signalIntegerTwo))]
	.join(', ');

// Human-friendly description of a signal
const getSignalDescription = signal => signalsByName[signal].description;

;// CONCATENATED MODULE: ./node_modules/execa/lib/terminate/timeout.js




// Validate `timeout` option
const validateTimeout = ({timeout}) => {
	if (timeout !== undefined) {
		validateDelay(timeout, 'timeout');
	}
};

// Used by the `timeout` and `forceKillAfterDelay` options.
// Fractional numbers are excluded since `spawnSync()` requires an integer `timeout`.
const validateDelay = (delay, optionName) => {
	if (!Number.isInteger(delay) || delay < 0 || delay > MAX_DELAY) {
		throw new TypeError(`Expected the \`${optionName}\` option to be a non-negative integer up to ${MAX_DELAY}, got \`${delay}\` (${getTypeName(delay)})`);
	}
};

// Timers fire right away when their delay is larger than this
const MAX_DELAY = (2 ** 31) - 1;

// Fails when the `timeout` option is exceeded
const throwOnTimeout = (kill, timeout, context, controller) => timeout === 0 || timeout === undefined
	? []
	: [killAfterTimeout(kill, timeout, context, controller)];

const killAfterTimeout = async (kill, timeout, context, {signal}) => {
	await (0,promises_namespaceObject.setTimeout)(timeout, undefined, {signal});
	context.terminationReason ??= 'timeout';
	kill();
	throw new DiscardedError();
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/terminate/kill.js





// Normalize the `forceKillAfterDelay` option
const normalizeForceKillAfterDelay = forceKillAfterDelay => {
	if (forceKillAfterDelay === false) {
		return forceKillAfterDelay;
	}

	if (forceKillAfterDelay === true) {
		return DEFAULT_FORCE_KILL_TIMEOUT;
	}

	validateDelay(forceKillAfterDelay, 'forceKillAfterDelay');
	return forceKillAfterDelay;
};

const DEFAULT_FORCE_KILL_TIMEOUT = 1000 * 5;

// Monkey-patches `subprocess.kill()` to add `forceKillAfterDelay` behavior and `.kill(error)`
const subprocessKill = (
	{kill, options: {forceKillAfterDelay, killSignal}, onInternalError, context, controller},
	signalOrError,
	errorArgument,
) => {
	const {signal, error} = parseKillArguments(signalOrError, errorArgument, killSignal);
	emitKillError(error, onInternalError);
	const killResult = kill(signal);
	setKillTimeout({
		kill,
		signal,
		forceKillAfterDelay,
		killSignal,
		killResult,
		context,
		controller,
	});
	return killResult;
};

const parseKillArguments = (signalOrError, errorArgument, killSignal) => {
	const [signal = killSignal, error] = isErrorInstance(signalOrError)
		? [undefined, signalOrError]
		: [signalOrError, errorArgument];

	if (typeof signal !== 'string' && !Number.isInteger(signal)) {
		throw new TypeError(`The first argument must be an error instance or a signal name string/integer: ${String(signal)}`);
	}

	if (error !== undefined && !isErrorInstance(error)) {
		throw new TypeError(`The second argument is optional. If specified, it must be an error instance: ${error}`);
	}

	return {signal: normalizeSignalArgument(signal), error};
};

// Fails right away when calling `subprocess.kill(error)`.
// Does not wait for actual signal termination.
// Uses a deferred promise instead of the `error` event on the subprocess, as this is less intrusive.
const emitKillError = (error, onInternalError) => {
	if (error !== undefined) {
		onInternalError.reject(error);
	}
};

const setKillTimeout = async ({kill, signal, forceKillAfterDelay, killSignal, killResult, context, controller}) => {
	if (signal === killSignal && killResult) {
		killOnTimeout({
			kill,
			forceKillAfterDelay,
			context,
			controllerSignal: controller.signal,
		});
	}
};

// Forcefully terminate a subprocess after a timeout
const killOnTimeout = async ({kill, forceKillAfterDelay, context, controllerSignal}) => {
	if (forceKillAfterDelay === false) {
		return;
	}

	try {
		await (0,promises_namespaceObject.setTimeout)(forceKillAfterDelay, undefined, {signal: controllerSignal});
		if (kill('SIGKILL')) {
			context.isForcefullyTerminated ??= true;
		}
	} catch {}
};

;// CONCATENATED MODULE: external "node:events"
const external_node_events_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:events");
;// CONCATENATED MODULE: ./node_modules/execa/lib/utils/abort-signal.js


// Combines `util.aborted()` and `events.addAbortListener()`: promise-based and cleaned up with a stop signal
const onAbortedSignal = async (mainSignal, stopSignal) => {
	if (!mainSignal.aborted) {
		await (0,external_node_events_namespaceObject.once)(mainSignal, 'abort', {signal: stopSignal});
	}
};

// Validate the `cancelSignal` and `unpipeSignal` options, so a wrong type fails right away instead of failing later with an unrelated error
const validateAbortSignal = (signal, optionName) => {
	if (signal !== undefined && Object.prototype.toString.call(signal) !== '[object AbortSignal]') {
		throw new TypeError(`The \`${optionName}\` option must be an AbortSignal: ${String(signal)}.`);
	}
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/terminate/cancel.js


// Validate the `cancelSignal` option
const validateCancelSignal = ({cancelSignal}) => {
	validateAbortSignal(cancelSignal, 'cancelSignal');
};

// The `signal` option was renamed to `cancelSignal`. Validated for every method, otherwise synchronous methods would silently ignore it, since `child_process.spawnSync()` does not support that option either.
const validateRenamedSignalOption = ({signal}) => {
	if (signal !== undefined) {
		throw new TypeError('The "signal" option has been renamed to "cancelSignal" instead.');
	}
};

// Terminate the subprocess when aborting the `cancelSignal` option and `gracefulSignal` is `false`
const throwOnCancel = ({kill, cancelSignal, gracefulCancel, context, controller}) => cancelSignal === undefined || gracefulCancel
	? []
	: [terminateOnCancel(kill, cancelSignal, context, controller)];

const terminateOnCancel = async (kill, cancelSignal, context, {signal}) => {
	await onAbortedSignal(cancelSignal, signal);
	context.terminationReason ??= 'cancel';
	kill();
	throw cancelSignal.reason;
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/ipc/validation.js


// Validate the IPC channel is connected before receiving/sending messages
const validateIpcMethod = ({methodName, isSubprocess, ipc, isConnected}) => {
	validateIpcOption(methodName, isSubprocess, ipc);
	validateConnection(methodName, isSubprocess, isConnected);
};

// Better error message when forgetting to set `ipc: true` and using the IPC methods
const validateIpcOption = (methodName, isSubprocess, ipc) => {
	if (!ipc) {
		throw new Error(`${getMethodName(methodName, isSubprocess)} can only be used if the \`ipc\` option is \`true\`.`);
	}
};

// Better error message when one process does not send/receive messages once the other process has disconnected.
// This also makes it clear that any buffered messages are lost once either process has disconnected.
// Also when aborting `cancelSignal` after disconnecting the IPC.
const validateConnection = (methodName, isSubprocess, isConnected) => {
	if (!isConnected) {
		throw new Error(`${getMethodName(methodName, isSubprocess)} cannot be used: the ${getOtherProcessName(isSubprocess)} has already exited or disconnected.`);
	}
};

// When `getOneMessage()` could not complete due to an early disconnection
const throwOnEarlyDisconnect = isSubprocess => {
	throw new Error(`${getMethodName('getOneMessage', isSubprocess)} could not complete: the ${getOtherProcessName(isSubprocess)} exited or disconnected.`);
};

// When both processes use `sendMessage()` with `strict` at the same time
const throwOnStrictDeadlockError = isSubprocess => {
	throw new Error(`${getMethodName('sendMessage', isSubprocess)} failed: the ${getOtherProcessName(isSubprocess)} is sending a message too, instead of listening to incoming messages.
This can be fixed by both sending a message and listening to incoming messages at the same time:

const [receivedMessage] = await Promise.all([
	${getMethodName('getOneMessage', isSubprocess)},
	${getMethodName('sendMessage', isSubprocess, 'message, {strict: true}')},
]);`);
};

// When the other process used `strict` but the current process had I/O error calling `sendMessage()` for the response
const getStrictResponseError = (error, isSubprocess) => new Error(`${getMethodName('sendMessage', isSubprocess)} failed when sending an acknowledgment response to the ${getOtherProcessName(isSubprocess)}.`, {cause: error});

// When using `strict` but the other process was not listening for messages
const throwOnMissingStrict = isSubprocess => {
	throw new Error(`${getMethodName('sendMessage', isSubprocess)} failed: the ${getOtherProcessName(isSubprocess)} is not listening to incoming messages.`);
};

// When using `strict` but the other process disconnected before receiving the message
const throwOnStrictDisconnect = isSubprocess => {
	throw new Error(`${getMethodName('sendMessage', isSubprocess)} failed: the ${getOtherProcessName(isSubprocess)} exited without listening to incoming messages.`);
};

// When the current process disconnects while the subprocess is listening to `cancelSignal`
const getAbortDisconnectError = () => new Error(`\`cancelSignal\` aborted: the ${getOtherProcessName(true)} disconnected.`);

// When the subprocess uses `cancelSignal` but not the current process
const throwOnMissingParent = () => {
	throw new Error('`getCancelSignal()` cannot be used without setting the `gracefulCancel` option to `true`.');
};

// EPIPE can happen when sending a message to a subprocess that is closing but has not disconnected yet
const handleEpipeError = ({error, methodName, isSubprocess}) => {
	if (error.code === 'EPIPE') {
		throw new Error(`${getMethodName(methodName, isSubprocess)} cannot be used: the ${getOtherProcessName(isSubprocess)} is disconnecting.`, {cause: error});
	}
};

// Better error message when sending messages which cannot be serialized.
// Works with both `serialization: 'advanced'` and `serialization: 'json'`.
const handleSerializationError = ({error, methodName, isSubprocess, message}) => {
	if (isSerializationError(error)) {
		throw new Error(`${getMethodName(methodName, isSubprocess)}'s argument type is invalid: the message cannot be serialized: ${serializeInvalidMessage(message)}.`, {cause: error});
	}
};

// `String()` throws with objects that have a `null` prototype or a throwing `toString()` method
const serializeInvalidMessage = message => {
	try {
		return String(message);
	} catch {
		return (0,external_node_util_namespaceObject.inspect)(message);
	}
};

const isSerializationError = ({code, message}) => SERIALIZATION_ERROR_CODES.has(code)
	|| SERIALIZATION_ERROR_MESSAGES.some(serializationErrorMessage => message.includes(serializationErrorMessage));

// `error.code` set by Node.js when it failed to serialize the message
const SERIALIZATION_ERROR_CODES = new Set([
	// Message is `undefined`
	'ERR_MISSING_ARGS',
	// Message is a function, a bigint, a symbol
	'ERR_INVALID_ARG_TYPE',
]);

// `error.message` set by Node.js when it failed to serialize the message
const SERIALIZATION_ERROR_MESSAGES = [
	// Message is a promise or a proxy, with `serialization: 'advanced'`
	'could not be cloned',
	// Message has cycles, with `serialization: 'json'`
	'circular structure',
	// Message has cycles inside toJSON(), with `serialization: 'json'`
	'call stack size exceeded',
];

const getMethodName = (methodName, isSubprocess, parameters = '') => methodName === 'cancelSignal'
	? '`cancelSignal`\'s `controller.abort()`'
	: `${getNamespaceName(isSubprocess)}${methodName}(${parameters})`;

const getNamespaceName = isSubprocess => isSubprocess ? '' : 'subprocess.';

const getOtherProcessName = isSubprocess => isSubprocess ? 'parent process' : 'subprocess';

// When any error arises, we disconnect the IPC.
// Otherwise, it is likely that one of the processes will stop sending/receiving messages.
// This would leave the other process hanging.
const disconnect = anyProcess => {
	if (anyProcess.connected) {
		anyProcess.disconnect();
	}
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/utils/deferred.js
const createDeferred = () => {
	const methods = {};
	const promise = new Promise((resolve, reject) => {
		Object.assign(methods, {resolve, reject});
	});
	return Object.assign(promise, methods);
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/utils/max-listeners.js


// Temporarily increase the maximum number of listeners on an eventEmitter
const incrementMaxListeners = (eventEmitter, maxListenersIncrement, signal) => {
	const maxListeners = eventEmitter.getMaxListeners();
	if (maxListeners === 0 || maxListeners === Infinity) {
		return;
	}

	eventEmitter.setMaxListeners(maxListeners + maxListenersIncrement);
	(0,external_node_events_namespaceObject.addAbortListener)(signal, () => {
		eventEmitter.setMaxListeners(eventEmitter.getMaxListeners() - maxListenersIncrement);
	});
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/ipc/reference.js
// By default, Node.js keeps the subprocess alive while it has a `message` or `disconnect` listener.
// We replicate the same logic for the events that we proxy.
// This ensures the subprocess is kept alive while `getOneMessage()` and `getEachMessage()` are ongoing.
// This is not a problem with `sendMessage()` since Node.js handles that method automatically.
// We do not use `anyProcess.channel.ref()` since this would prevent the automatic `.channel.refCounted()` Node.js is doing.
// We keep a reference to `anyProcess.channel` since it might be `null` while `getOneMessage()` or `getEachMessage()` is still processing debounced messages.
// See https://github.com/nodejs/node/blob/2aaeaa863c35befa2ebaa98fb7737ec84df4d8e9/lib/internal/child_process.js#L547
const addReference = (channel, reference) => {
	if (reference) {
		addReferenceCount(channel);
	}
};

const addReferenceCount = channel => {
	channel.refCounted();
};

const removeReference = (channel, reference) => {
	if (reference) {
		removeReferenceCount(channel);
	}
};

const removeReferenceCount = channel => {
	channel.unrefCounted();
};

// To proxy events, we setup some global listeners on the `message` and `disconnect` events.
// Those should not keep the subprocess alive, so we remove the automatic counting that Node.js is doing.
// See https://github.com/nodejs/node/blob/1b965270a9c273d4cf70e8808e9d28b9ada7844f/lib/child_process.js#L180
const undoAddedReferences = (channel, isSubprocess) => {
	if (!isSubprocess) {
		return;
	}

	removeReferenceCount(channel);
	removeReferenceCount(channel);
};

// Reverse it during `disconnect`
const redoAddedReferences = (channel, isSubprocess) => {
	if (!isSubprocess) {
		return;
	}

	addReferenceCount(channel);
	addReferenceCount(channel);
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/ipc/incoming.js







// By default, Node.js buffers `message` events.
//  - Buffering happens when there is a `message` event is emitted but there is no handler.
//  - As soon as a `message` event handler is set, all buffered `message` events are emitted, emptying the buffer.
//  - This happens both in the current process and the subprocess.
//  - See https://github.com/nodejs/node/blob/501546e8f37059cd577041e23941b640d0d4d406/lib/internal/child_process.js#L719
// This is helpful. Notably, this allows sending messages to a subprocess that's still initializing.
// However, it has several problems.
//  - This works with `events.on()` but not `events.once()` since all buffered messages are emitted at once.
//    For example, users cannot call `await getOneMessage()`/`getEachMessage()` multiple times in a row.
//  - When a user intentionally starts listening to `message` at a specific point in time, past `message` events are replayed, which might be unexpected.
//  - Buffering is unlimited, which might lead to an out-of-memory crash.
//  - This does not work well with multiple consumers.
//    For example, Execa consumes events with both `result.ipcOutput` and manual IPC calls like `getOneMessage()`.
//    Since `result.ipcOutput` reads all incoming messages, no buffering happens for manual IPC calls.
//  - Forgetting to setup a `message` listener, or setting it up too late, is a programming mistake.
//    The default behavior does not allow users to realize they made that mistake.
// To solve those problems, instead of buffering messages, we debounce them.
// The `message` event so it is emitted at most once per macrotask.
const onMessage = async ({anyProcess, channel, isSubprocess, ipcEmitter}, wrappedMessage) => {
	// `gracefulCancel` messages are only ever sent by the current process to its subprocess.
	// Only the subprocess must interpret them, otherwise a subprocess could abort its parent's own `cancelSignal`, or make it silently drop a message.
	if (handleStrictResponse(wrappedMessage, anyProcess) || (isSubprocess && handleAbort(wrappedMessage))) {
		return;
	}

	if (!INCOMING_MESSAGES.has(anyProcess)) {
		INCOMING_MESSAGES.set(anyProcess, []);
	}

	const incomingMessages = INCOMING_MESSAGES.get(anyProcess);
	incomingMessages.push(wrappedMessage);

	if (incomingMessages.length > 1) {
		return;
	}

	while (incomingMessages.length > 0) {
		// The message being processed is the oldest one, which is not `wrappedMessage` after the first iteration
		// eslint-disable-next-line no-await-in-loop
		await waitForOutgoingMessages(anyProcess, ipcEmitter, incomingMessages[0]);
		// eslint-disable-next-line no-await-in-loop
		await promises_namespaceObject.scheduler.yield();

		// eslint-disable-next-line no-await-in-loop
		const message = await handleStrictRequest({
			wrappedMessage: incomingMessages[0],
			anyProcess,
			channel,
			isSubprocess,
			ipcEmitter,
		});

		incomingMessages.shift();
		ipcEmitter.emit('message', message);
		ipcEmitter.emit('message:done');
	}
};

// If the `message` event is currently debounced, the `disconnect` event must wait for it
const onDisconnect = async ({anyProcess, channel, isSubprocess, ipcEmitter, boundOnMessage}) => {
	// Like `gracefulCancel` messages, only the disconnection from the parent process aborts `getCancelSignal()`.
	// Otherwise, disconnecting from one of the current process' own subprocesses would abort it.
	if (isSubprocess) {
		abortOnDisconnect();
	}

	const incomingMessages = INCOMING_MESSAGES.get(anyProcess);
	while (incomingMessages?.length > 0) {
		// eslint-disable-next-line no-await-in-loop
		await (0,external_node_events_namespaceObject.once)(ipcEmitter, 'message:done');
	}

	anyProcess.removeListener('message', boundOnMessage);
	redoAddedReferences(channel, isSubprocess);
	ipcEmitter.connected = false;
	ipcEmitter.emit('disconnect');
};

const INCOMING_MESSAGES = new WeakMap();

;// CONCATENATED MODULE: ./node_modules/execa/lib/ipc/forward.js




// Forward the `message` and `disconnect` events from the process and subprocess to a proxy emitter.
// This prevents the `error` event from stopping IPC.
// This also allows debouncing the `message` event.
const getIpcEmitter = (anyProcess, channel, isSubprocess) => {
	if (IPC_EMITTERS.has(anyProcess)) {
		return IPC_EMITTERS.get(anyProcess);
	}

	// Use an `EventEmitter`, like the `process` that is being proxied
	// eslint-disable-next-line unicorn/prefer-event-target
	const ipcEmitter = new external_node_events_namespaceObject.EventEmitter();
	// Each pending `getOneMessage()` or `getEachMessage()` call adds listeners, which are removed once it ends. Users cannot reach this emitter to increase its maximum number of listeners.
	ipcEmitter.setMaxListeners(0);
	ipcEmitter.connected = true;
	IPC_EMITTERS.set(anyProcess, ipcEmitter);
	forwardEvents({
		ipcEmitter,
		anyProcess,
		channel,
		isSubprocess,
	});
	return ipcEmitter;
};

const IPC_EMITTERS = new WeakMap();

// The `message` and `disconnect` events are buffered in the subprocess until the first listener is setup.
// However, unbuffering happens after one tick, so this give enough time for the caller to setup the listener on the proxy emitter first.
// See https://github.com/nodejs/node/blob/2aaeaa863c35befa2ebaa98fb7737ec84df4d8e9/lib/internal/child_process.js#L721
const forwardEvents = ({ipcEmitter, anyProcess, channel, isSubprocess}) => {
	const boundOnMessage = onMessage.bind(undefined, {
		anyProcess,
		channel,
		isSubprocess,
		ipcEmitter,
	});
	anyProcess.on('message', boundOnMessage);
	anyProcess.once('disconnect', onDisconnect.bind(undefined, {
		anyProcess,
		channel,
		isSubprocess,
		ipcEmitter,
		boundOnMessage,
	}));
	undoAddedReferences(channel, isSubprocess);
};

// Check whether there might still be some `message` events to receive
const isConnected = anyProcess => {
	const ipcEmitter = IPC_EMITTERS.get(anyProcess);
	return ipcEmitter === undefined
		? anyProcess.channel !== undefined && anyProcess.channel !== null
		: ipcEmitter.connected;
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/ipc/strict.js








// When using the `strict` option, wrap the message with metadata during `sendMessage()`
const handleSendStrict = ({anyProcess, channel, isSubprocess, message, strict}) => {
	if (!strict) {
		return message;
	}

	const ipcEmitter = getIpcEmitter(anyProcess, channel, isSubprocess);
	const hasListeners = hasMessageListeners(anyProcess, ipcEmitter);
	return {
		id: count++,
		type: REQUEST_TYPE,
		message,
		hasListeners,
	};
};

// This is a plain number, not a `BigInt`, since it must be serializable with `serialization: 'json'`
let count = 0;

// Handles when both processes are calling `sendMessage()` with `strict` at the same time.
// If neither process is listening, this would create a deadlock. We detect it and throw.
const validateStrictDeadlock = (outgoingMessages, wrappedMessage) => {
	if (!isStrictRequest(wrappedMessage) || wrappedMessage.hasListeners) {
		return;
	}

	for (const {id} of outgoingMessages) {
		if (id !== undefined) {
			STRICT_RESPONSES[id].deferred.resolve({isDeadlock: true, hasListeners: false});
		}
	}
};

// The other process then sends the acknowledgment back as a response
const handleStrictRequest = async ({wrappedMessage, anyProcess, channel, isSubprocess, ipcEmitter}) => {
	if (!isStrictRequest(wrappedMessage)) {
		return wrappedMessage;
	}

	const {id, message} = wrappedMessage;
	// The acknowledgment cannot be sent anymore, but the message is still delivered
	if (!anyProcess.connected) {
		return message;
	}

	const response = {id, type: RESPONSE_TYPE, message: hasMessageListeners(anyProcess, ipcEmitter)};

	try {
		await sendMessage({
			anyProcess,
			channel,
			isSubprocess,
			ipc: true,
		}, response);
	} catch (error) {
		// When the other process disconnects right after sending the message, it cannot receive the acknowledgment anymore. Like above, the message is still delivered.
		if (error.cause?.code !== 'EPIPE') {
			ipcEmitter.emit('strict:error', error);
		}
	}

	return message;
};

// Reception of the acknowledgment response.
// Ids are shared by all processes, so the response must come from the process the message was sent to. Otherwise, a subprocess could acknowledge a message sent to another one.
const handleStrictResponse = (wrappedMessage, anyProcess) => {
	if (wrappedMessage?.type !== RESPONSE_TYPE) {
		return false;
	}

	const {id, message: hasListeners} = wrappedMessage;
	const strictResponse = STRICT_RESPONSES[id];
	if (strictResponse?.anyProcess === anyProcess) {
		strictResponse.deferred.resolve({isDeadlock: false, hasListeners});
	}

	return true;
};

// Wait for the other process to receive the message from `sendMessage()`
const waitForStrictResponse = async (wrappedMessage, anyProcess, isSubprocess) => {
	const deferred = createDeferred();
	STRICT_RESPONSES[wrappedMessage.id] = {deferred, anyProcess};
	const controller = new AbortController();

	try {
		const {isDeadlock, hasListeners} = await Promise.race([
			deferred,
			throwOnDisconnect(anyProcess, isSubprocess, controller),
		]);

		if (isDeadlock) {
			throwOnStrictDeadlockError(isSubprocess);
		}

		if (!hasListeners) {
			throwOnMissingStrict(isSubprocess);
		}
	} finally {
		controller.abort();
		delete STRICT_RESPONSES[wrappedMessage.id];
	}
};

const STRICT_RESPONSES = {__proto__: null};

const throwOnDisconnect = async (anyProcess, isSubprocess, {signal}) => {
	incrementMaxListeners(anyProcess, 1, signal);
	await (0,external_node_events_namespaceObject.once)(anyProcess, 'disconnect', {signal});
	throwOnStrictDisconnect(isSubprocess);
};

const REQUEST_TYPE = 'execa:ipc:request';
const RESPONSE_TYPE = 'execa:ipc:response';

// `id` and `hasListeners` are always defined in messages sent by `sendMessage()` with the `strict` option.
// Messages with the same `type` but without them are user messages, which must be delivered as is.
const isStrictRequest = wrappedMessage => wrappedMessage?.type === REQUEST_TYPE
	&& Number.isInteger(wrappedMessage.id)
	&& typeof wrappedMessage.hasListeners === 'boolean';

;// CONCATENATED MODULE: ./node_modules/execa/lib/ipc/outgoing.js




// When `sendMessage()` is ongoing, any `message` being received waits before being emitted.
// This allows calling one or multiple `await sendMessage()` followed by `await getOneMessage()`/`await getEachMessage()`.
// Without running into a race condition when the other process sends a response too fast, before the current process set up a listener.
const startSendMessage = (anyProcess, wrappedMessage, strict) => {
	if (!OUTGOING_MESSAGES.has(anyProcess)) {
		OUTGOING_MESSAGES.set(anyProcess, new Set());
	}

	const outgoingMessages = OUTGOING_MESSAGES.get(anyProcess);
	const onMessageSent = createDeferred();
	const id = strict ? wrappedMessage.id : undefined;
	const outgoingMessage = {onMessageSent, id};
	outgoingMessages.add(outgoingMessage);
	return {outgoingMessages, outgoingMessage};
};

const endSendMessage = ({outgoingMessages, outgoingMessage}) => {
	outgoingMessages.delete(outgoingMessage);
	outgoingMessage.onMessageSent.resolve();
};

// Await while `sendMessage()` is ongoing, unless there is already a `message` listener
const waitForOutgoingMessages = async (anyProcess, ipcEmitter, wrappedMessage) => {
	while (!hasMessageListeners(anyProcess, ipcEmitter) && OUTGOING_MESSAGES.get(anyProcess)?.size > 0) {
		const outgoingMessages = [...OUTGOING_MESSAGES.get(anyProcess)];
		validateStrictDeadlock(outgoingMessages, wrappedMessage);
		// eslint-disable-next-line no-await-in-loop
		await Promise.all(outgoingMessages.map(({onMessageSent}) => onMessageSent));
	}
};

const OUTGOING_MESSAGES = new WeakMap();
const IPC_SUBPROCESS_OPTIONS = new WeakMap();

const setIpcSubprocessOptions = (subprocess, options) => {
	IPC_SUBPROCESS_OPTIONS.set(subprocess, options);
};

// Whether any `message` listener is setup
const hasMessageListeners = (anyProcess, ipcEmitter) => ipcEmitter.listenerCount('message') > getMinListenerCount(anyProcess);

// When `buffer` is `false`, we set up a `message` listener that should be ignored.
// That listener is only meant to intercept `strict` acknowledgement responses.
const getMinListenerCount = anyProcess => getOptions(anyProcess) !== undefined
	&& !getFdSpecificValue(getOptions(anyProcess).buffer, 'ipc')
	? 1
	: 0;

const getOptions = anyProcess => IPC_SUBPROCESS_OPTIONS.get(anyProcess);

;// CONCATENATED MODULE: ./node_modules/execa/lib/ipc/send.js






// Like `[sub]process.send()` but promise-based.
// We do not `await subprocess` during `.sendMessage()` nor `.getOneMessage()` since those methods are transient.
// Users would still need to `await subprocess` after the method is done.
// Also, this would prevent `unhandledRejection` event from being emitted, making it silent.
const sendMessage = ({anyProcess, channel, isSubprocess, ipc}, message, options) => {
	const {strict = false} = copyOptions(options);
	checkBooleanOption(strict, 'strict');
	const methodName = 'sendMessage';
	validateIpcMethod({
		methodName,
		isSubprocess,
		ipc,
		isConnected: anyProcess.connected,
	});

	return sendMessageAsync({
		anyProcess,
		channel,
		methodName,
		isSubprocess,
		message,
		strict,
	});
};

const sendMessageAsync = async ({anyProcess, channel, methodName, isSubprocess, message, strict}) => {
	const wrappedMessage = handleSendStrict({
		anyProcess,
		channel,
		isSubprocess,
		message,
		strict,
	});
	const outgoingMessagesState = startSendMessage(anyProcess, wrappedMessage, strict);
	try {
		await sendOneMessage({
			anyProcess,
			methodName,
			isSubprocess,
			wrappedMessage,
			message,
			strict,
		});
	} catch (error) {
		disconnect(anyProcess);
		throw error;
	} finally {
		endSendMessage(outgoingMessagesState);
	}
};

// Used internally by `cancelSignal`
const sendOneMessage = async ({anyProcess, methodName, isSubprocess, wrappedMessage, message, strict = false}) => {
	const sendMethod = getSendMethod(anyProcess);

	try {
		await Promise.all([
			// Only messages sent with the `strict` option wait for an acknowledgment response
			strict ? waitForStrictResponse(wrappedMessage, anyProcess, isSubprocess) : undefined,
			sendMethod(wrappedMessage),
		]);
	} catch (error) {
		handleEpipeError({error, methodName, isSubprocess});
		handleSerializationError({
			error,
			methodName,
			isSubprocess,
			message,
		});
		throw error;
	}
};

// [sub]process.send() promisified, memoized
const getSendMethod = anyProcess => {
	if (PROCESS_SEND_METHODS.has(anyProcess)) {
		return PROCESS_SEND_METHODS.get(anyProcess);
	}

	const sendMethod = (0,external_node_util_namespaceObject.promisify)(anyProcess.send.bind(anyProcess));
	PROCESS_SEND_METHODS.set(anyProcess, sendMethod);
	return sendMethod;
};

const PROCESS_SEND_METHODS = new WeakMap();

;// CONCATENATED MODULE: ./node_modules/execa/lib/ipc/graceful.js





// Send an IPC message so the subprocess performs a graceful termination
const sendAbort = (subprocess, message) => {
	const methodName = 'cancelSignal';
	validateConnection(methodName, false, subprocess.connected);
	return sendOneMessage({
		anyProcess: subprocess,
		methodName,
		isSubprocess: false,
		wrappedMessage: {type: GRACEFUL_CANCEL_TYPE, message},
		message,
	});
};

// When the signal is being used, start listening for incoming messages.
// Unbuffering messages takes one microtask to complete, so this must be async.
const getCancelSignal = async ({anyProcess, channel, isSubprocess, ipc}) => {
	await startIpc({
		anyProcess,
		channel,
		isSubprocess,
		ipc,
	});
	return cancelController.signal;
};

const startIpc = async ({anyProcess, channel, isSubprocess, ipc}) => {
	if (isCancelListening) {
		return;
	}

	// This is validated before the flag is set, so that a call which throws keeps failing on subsequent calls
	if (!ipc) {
		throwOnMissingParent();
		return;
	}

	isCancelListening = true;

	// `channel` is retrieved when Execa is imported, so the current process might have disconnected since then
	if (!anyProcess.connected) {
		abortOnDisconnect();
		return;
	}

	getIpcEmitter(anyProcess, channel, isSubprocess);
	await promises_namespaceObject.scheduler.yield();
};

let isCancelListening = false;

// Reception of IPC message to perform a graceful termination
const handleAbort = wrappedMessage => {
	if (wrappedMessage?.type !== GRACEFUL_CANCEL_TYPE) {
		return false;
	}

	cancelController.abort(wrappedMessage.message);
	return true;
};

const GRACEFUL_CANCEL_TYPE = 'execa:ipc:cancel';

// When the current process disconnects early, the subprocess `cancelSignal` is aborted.
// Otherwise, the signal would never be able to be aborted later on.
const abortOnDisconnect = () => {
	cancelController.abort(getAbortDisconnectError());
};

const cancelController = new AbortController();

;// CONCATENATED MODULE: ./node_modules/execa/lib/terminate/graceful.js




// Validate the `gracefulCancel` option
const validateGracefulCancel = ({gracefulCancel, cancelSignal, ipc, serialization}) => {
	if (!gracefulCancel) {
		return;
	}

	if (cancelSignal === undefined) {
		throw new Error('The `cancelSignal` option must be defined when setting the `gracefulCancel` option.');
	}

	if (!ipc) {
		throw new Error('The `ipc` option cannot be false when setting the `gracefulCancel` option.');
	}

	if (serialization === 'json') {
		throw new Error('The `serialization` option cannot be \'json\' when setting the `gracefulCancel` option.');
	}
};

// Send abort reason to the subprocess when aborting the `cancelSignal` option and `gracefulCancel` is `true`
const throwOnGracefulCancel = ({
	subprocess,
	kill,
	cancelSignal,
	gracefulCancel,
	forceKillAfterDelay,
	context,
	controller,
}) => gracefulCancel
	? [sendOnAbort({
		subprocess,
		kill,
		cancelSignal,
		forceKillAfterDelay,
		context,
		controller,
	})]
	: [];

const sendOnAbort = async ({subprocess, kill, cancelSignal, forceKillAfterDelay, context, controller: {signal}}) => {
	await onAbortedSignal(cancelSignal, signal);
	const reason = getReason(cancelSignal);
	await sendAbort(subprocess, reason);
	killOnTimeout({
		kill,
		forceKillAfterDelay,
		context,
		controllerSignal: signal,
	});
	context.terminationReason ??= 'gracefulCancel';
	throw cancelSignal.reason;
};

// The default `reason` is a DOMException, which is not serializable with V8
// See https://github.com/nodejs/node/issues/53225
const getReason = ({reason}) => {
	if (!(reason instanceof DOMException)) {
		return reason;
	}

	const error = new Error(reason.message);
	Object.defineProperty(error, 'stack', {
		value: reason.stack,
		enumerable: false,
		configurable: true,
		writable: true,
	});
	return error;
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/methods/node.js




// `execaNode()` is a shortcut for `execa(..., {node: true})`
const mapNode = ({options}) => {
	if (options.node === false) {
		throw new TypeError('The "node" option cannot be false with `execaNode()`.');
	}

	return {options: {__proto__: null, ...options, node: true}};
};

// The subprocess must not reuse the current process' `--inspect` port.
// It must not run the current process' `node --eval` or `node --print` code either, instead of its file. Like `child_process.fork()`, this prevents fork bombs.
const getDefaultNodeOptions = () => {
	const nodeOptions = [];
	for (let index = 0; index < external_node_process_namespaceObject.execArgv.length; index += 1) {
		const nodeOption = external_node_process_namespaceObject.execArgv[index];
		if (REMOVED_OPTIONS_WITH_VALUE.has(nodeOption)) {
			// `-p` and `--print` do not take a value when followed by another flag, e.g. `node -p -e code`. With the other options, Node.js fails when their value starts with `-`.
			if (!external_node_process_namespaceObject.execArgv[index + 1]?.startsWith('-')) {
				index += 1;
			}
		} else if (!IGNORED_OPTIONS_REGEXP.test(nodeOption)) {
			nodeOptions.push(nodeOption);
		}
	}

	return nodeOptions;
};

// Those options are followed by a separate value, which is removed too
const REMOVED_OPTIONS_WITH_VALUE = new Set(['-e', '--eval', '-p', '--print', '-pe', '--input-type', '--inspect-port']);
const IGNORED_OPTIONS_REGEXP = /^--(?:inspect|eval=|print=|input-type=)/;

// Applies the `node: true` option, and the related `nodePath`/`nodeOptions` options.
// Modifies the file commands/arguments to ensure the same Node binary and flags are re-used.
// Also adds `ipc: true` and `shell: false`.
const handleNodeOption = (file, commandArguments, {
	node: shouldHandleNode = false,
	nodePath = external_node_process_namespaceObject.execPath,
	nodeOptions = getDefaultNodeOptions(),
	cwd,
	execPath: formerNodePath,
	...options
}) => {
	if (formerNodePath !== undefined) {
		throw new TypeError('The "execPath" option has been removed. Please use the "nodePath" option instead.');
	}

	if (!Array.isArray(nodeOptions) || nodeOptions.some(nodeOption => typeof nodeOption !== 'string')) {
		throw new TypeError('The "nodeOptions" option must be an array of strings.');
	}

	const normalizedNodePath = safeNormalizeFileUrl(nodePath, 'The "nodePath" option');
	const resolvedNodePath = external_node_path_namespaceObject.resolve(cwd, normalizedNodePath);
	// Use spread (which only copies own properties) to safely get shell without reading polluted prototype
	const newOptions = {
		__proto__: null,
		shell: false,
		...options,
		nodePath: resolvedNodePath,
		node: shouldHandleNode,
		cwd,
	};

	if (!shouldHandleNode) {
		return [file, commandArguments, newOptions];
	}

	if (external_node_path_namespaceObject.basename(file, '.exe') === 'node') {
		throw new TypeError('When the "node" option is true, the first argument does not need to be "node".');
	}

	return [
		resolvedNodePath,
		[
			...nodeOptions,
			file,
			...commandArguments,
		],
		{
			__proto__: null,
			...newOptions,
			// Like other options, `undefined` uses the default value
			ipc: newOptions.ipc === undefined ? true : newOptions.ipc,
			shell: false,
		},
	];
};

;// CONCATENATED MODULE: external "node:v8"
const external_node_v8_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:v8");
;// CONCATENATED MODULE: ./node_modules/execa/lib/ipc/ipc-input.js



// Validate the `ipcInput` option
const validateIpcInputOption = ({ipcInput, ipc, serialization}) => {
	if (ipcInput === undefined) {
		return;
	}

	if (!ipc) {
		throw new Error('The `ipcInput` option cannot be set unless the `ipc` option is `true`.');
	}

	// An invalid `serialization` option is reported by `node:child_process` when spawning, like when `ipcInput` is not used
	validateIpcInput[serialization]?.(ipcInput);
};

const validateAdvancedInput = ipcInput => {
	try {
		(0,external_node_v8_namespaceObject.serialize)(ipcInput);
	} catch (error) {
		throw new Error('The `ipcInput` option is not serializable with a structured clone.', {cause: error});
	}
};

const validateJsonInput = ipcInput => {
	try {
		// `JSON.stringify()` returns `undefined` instead of throwing for values it cannot represent, such as functions and symbols
		if (JSON.stringify(ipcInput) === undefined) {
			throw new TypeError('The value cannot be represented as JSON.');
		}
	} catch (error) {
		throw new Error('The `ipcInput` option is not serializable with JSON.', {cause: error});
	}
};

const validateIpcInput = {
	__proto__: null,
	advanced: validateAdvancedInput,
	json: validateJsonInput,
};

// When the `ipcInput` option is set, it is sent as an initial IPC message to the subprocess
const sendIpcInput = async (subprocess, ipcInput, ipc) => {
	if (ipcInput === undefined) {
		return;
	}

	await sendMessage({
		anyProcess: subprocess,
		channel: subprocess.channel,
		isSubprocess: false,
		ipc,
	}, ipcInput);
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/arguments/encoding-option.js
// Validate `encoding` option
const validateEncoding = ({encoding}) => {
	if (ENCODINGS.has(encoding)) {
		return;
	}

	const correctEncoding = getCorrectEncoding(encoding);
	if (correctEncoding !== undefined) {
		throw new TypeError(`Invalid option \`encoding: ${serializeEncoding(encoding)}\`.
Please rename it to ${serializeEncoding(correctEncoding)}.`);
	}

	const correctEncodings = [...ENCODINGS].map(correctEncoding => serializeEncoding(correctEncoding)).join(', ');
	throw new TypeError(`Invalid option \`encoding: ${serializeEncoding(encoding)}\`.
Please rename it to one of: ${correctEncodings}.`);
};

const TEXT_ENCODINGS = new Set(['utf8', 'utf16le']);
const BINARY_ENCODINGS = new Set(['buffer', 'hex', 'base64', 'base64url', 'latin1', 'ascii']);
const ENCODINGS = TEXT_ENCODINGS.union(BINARY_ENCODINGS);

/*
Encoding to use when converting a transform's string to bytes.
Text encodings describe how text is represented as bytes, so those must be used, otherwise the string would be decoded with a different encoding than the one it was encoded with, which corrupts it.
Binary encodings instead describe how bytes are serialized as text, so the string's UTF-8 bytes are used. The same applies with the `binary` transform option, since the transform then deals with raw bytes.
*/
const getStringEncoding = (binary, encoding) => binary || !TEXT_ENCODINGS.has(encoding) ? 'utf8' : encoding;

// Text encodings only apply to the subprocess' output. Its input is always text encoded with UTF-8, so input transforms decode and encode strings with UTF-8 too, whichever text encoding the `encoding` option uses.
const getInputEncoding = encoding => TEXT_ENCODINGS.has(encoding) ? 'utf8' : encoding;

const getCorrectEncoding = encoding => {
	if (encoding === null) {
		return 'buffer';
	}

	if (typeof encoding !== 'string') {
		return;
	}

	const lowerEncoding = encoding.toLowerCase();
	if (lowerEncoding in ENCODING_ALIASES) {
		return ENCODING_ALIASES[lowerEncoding];
	}

	if (ENCODINGS.has(lowerEncoding)) {
		return lowerEncoding;
	}
};

const ENCODING_ALIASES = {
	__proto__: null,
	// eslint-disable-next-line unicorn/text-encoding-identifier-case
	'utf-8': 'utf8',
	'utf-16le': 'utf16le',
	'ucs-2': 'utf16le',
	ucs2: 'utf16le',
	binary: 'latin1',
};

const serializeEncoding = encoding => typeof encoding === 'string' ? `"${encoding}"` : String(encoding);

;// CONCATENATED MODULE: external "node:buffer"
const external_node_buffer_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:buffer");
;// CONCATENATED MODULE: external "node:fs/promises"
const external_node_fs_promises_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:fs/promises");
;// CONCATENATED MODULE: ./node_modules/which-command/index.js





const isWindows = external_node_process_namespaceObject.platform === 'win32';

// A command containing a directory separator is treated as a path and looked up directly, instead of being searched for in `PATH`. Backslash only counts as a separator on Windows, since it's a valid filename character on other platforms.
const separatorPattern = isWindows ? /[\/\\]/v : /\//v;

// The standard Windows executable extensions, used when `PATHEXT` is not set.
const defaultPathExt = '.COM;.EXE;.BAT;.CMD;.VBS;.VBE;.JS;.JSE;.WSF;.WSH;.MSC';

function resolveOptions(command, options) {
	if (typeof command !== 'string' || command.length === 0) {
		throw new TypeError('Expected a non-empty string.');
	}

	const {
		cwd = external_node_process_namespaceObject.cwd(),
		// On Windows, `process.env.PATH` can be undefined in some contexts (for example, worker threads), where it's only exposed as `Path`.
		path: searchPath = external_node_process_namespaceObject.env.PATH ?? (isWindows ? external_node_process_namespaceObject.env.Path : undefined) ?? '',
		// `||` (not `??`) so an empty `PATHEXT` falls back to the default instead of disabling all lookup on Windows.
		pathExt = external_node_process_namespaceObject.env.PATHEXT || defaultPathExt,
	} = options;

	return {cwd, searchPath, pathExt};
}

function windowsExtensions(command, pathExt) {
	const extensions = pathExt.split(external_node_path_namespaceObject.delimiter).filter(Boolean);
	const commandExtension = external_node_path_namespaceObject.extname(command).toLowerCase();

	// If the command already ends with a known executable extension, also try it verbatim.
	if (commandExtension !== '' && extensions.some(extension => extension.toLowerCase() === commandExtension)) {
		return ['', ...extensions];
	}

	return extensions;
}

function * candidatePaths(command, {cwd, searchPath, pathExt}) {
	const extensions = isWindows ? windowsExtensions(command, pathExt) : [''];

	if (separatorPattern.test(command)) {
		const base = external_node_path_namespaceObject.resolve(cwd, command);
		for (const extension of extensions) {
			yield base + extension;
		}

		return;
	}

	const directories = [
		// Windows searches the current directory before `PATH`.
		...(isWindows ? [cwd] : []),
		...searchPath.split(external_node_path_namespaceObject.delimiter),
	];

	for (const directory of directories) {
		// `PATH` entries can be wrapped in double quotes on Windows.
		const unquoted = isWindows && directory.length > 1 && directory.startsWith('"') && directory.endsWith('"') ? directory.slice(1, -1) : directory;

		// Skip empty entries. Unlike a POSIX shell, an empty entry is not treated as the current directory, since implicitly searching the current directory is a security risk. Checked after unquoting so a quoted-empty entry (`""`) is skipped too.
		if (unquoted === '') {
			continue;
		}

		const base = external_node_path_namespaceObject.resolve(cwd, unquoted, command);
		for (const extension of extensions) {
			yield base + extension;
		}
	}
}

async function isExecutable(filePath) {
	let stats;
	try {
		stats = await fsPromises.stat(filePath);
	} catch (error) {
		// Windows App Execution Aliases (in `WindowsApps`) throw `EACCES` on `stat`, but are valid, launchable executables.
		return isWindows && error.code === 'EACCES';
	}

	// A directory can have the executable bit set, but it's not a command.
	if (!stats.isFile()) {
		return false;
	}

	// On Windows, executability is determined by the file extension, which is already validated against `PATHEXT`.
	if (isWindows) {
		return true;
	}

	try {
		await fsPromises.access(filePath, fs.constants.X_OK);
		return true;
	} catch {
		return false;
	}
}

function isExecutableSync(filePath) {
	let stats;
	try {
		stats = external_node_fs_namespaceObject.statSync(filePath);
	} catch (error) {
		return isWindows && error.code === 'EACCES';
	}

	if (!stats.isFile()) {
		return false;
	}

	if (isWindows) {
		return true;
	}

	try {
		external_node_fs_namespaceObject.accessSync(filePath, external_node_fs_namespaceObject.constants.X_OK);
		return true;
	} catch {
		return false;
	}
}

async function whichCommand(command, options = {}) {
	const resolved = resolveOptions(command, options);

	for (const candidate of candidatePaths(command, resolved)) {
		// Checked sequentially so the first match in `PATH` order wins and the search can short-circuit.
		if (await isExecutable(candidate)) { // eslint-disable-line no-await-in-loop
			return candidate;
		}
	}

	return undefined;
}

function whichCommandSync(command, options = {}) {
	const resolved = resolveOptions(command, options);

	for (const candidate of candidatePaths(command, resolved)) {
		if (isExecutableSync(candidate)) {
			return candidate;
		}
	}

	return undefined;
}

async function whichCommandAll(command, options = {}) {
	const resolved = resolveOptions(command, options);
	const candidates = [...candidatePaths(command, resolved)];
	const matches = await Promise.all(candidates.map(async candidate => (await isExecutable(candidate)) ? candidate : undefined));
	return [...new Set(matches.filter(Boolean))];
}

function whichCommandAllSync(command, options = {}) {
	const resolved = resolveOptions(command, options);
	const found = [];

	for (const candidate of candidatePaths(command, resolved)) {
		if (isExecutableSync(candidate)) {
			found.push(candidate);
		}
	}

	return [...new Set(found)];
}

;// CONCATENATED MODULE: ./node_modules/execa/lib/arguments/command-file.js






/*
On Windows, `node:child_process` cannot natively run many kinds of files (`.cmd`, `.bat`, shebang scripts, ...): without a shell it resolves neither `PATHEXT` nor shebangs, and it does not escape arguments. We resolve the command to its full file path and escape its arguments ourselves, so those work without an explicit shell, just like on Unix, where the OS handles all of this for us.
*/
const parseCommandFile = (file, commandArguments, options) => {
	// The arguments are cloned since a shebang interpreter might be prepended below, which must not mutate the caller's array
	const parsed = {file, commandArguments: [...commandArguments], options};

	// Under a shell, or on Unix, the OS resolves the file and escapes the arguments itself
	return options.shell || external_node_process_namespaceObject.platform !== 'win32' ? parsed : escapeWindowsCommand(parsed);
};

// Only `.exe` and `.com` files can be spawned directly; anything else needs `cmd.exe`
const directlyExecutableRegExp = /\.(?:com|exe)$/i;

const escapeWindowsCommand = parsed => {
	// Resolve the file to an absolute path, following its shebang to the interpreter if any
	const resolvedFile = resolveWithShebang(parsed);

	// A directly executable file is spawned by its resolved path, bypassing `cmd.exe` and its escaping
	if (resolvedFile !== undefined && directlyExecutableRegExp.test(resolvedFile)) {
		if (parsed.options.argv0 === undefined) {
			parsed.options.argv0 = parsed.file;
		}

		parsed.file = resolvedFile;
		return parsed;
	}

	/*
	`cmd.exe` treats CR and LF as command separators and offers no way to escape them, so allowing either would enable command injection.
	Reject them instead.
	*/
	for (const value of [parsed.file, ...parsed.commandArguments]) {
		assertNoLineBreak(value);
	}

	/*
	POSIX separators must become Windows ones (`foo/bar` -> `foo\bar`), otherwise resolution always fails with ENOENT.

	Unlike Rust, which quotes the batch file's path, the file is caret-escaped. `cmd.exe` only interprets it once, and the file might not be resolved, for example when it is a `cmd.exe` builtin, which would not run if quoted.
	*/
	const escapedFile = escapeMetaChars(external_node_path_namespaceObject.normalize(resolvedFile ?? parsed.file));
	const escapedArguments = parsed.commandArguments.map(argument => escapeArgument(argument));
	const commandLine = `"${[escapedFile, ...escapedArguments].join(' ')}"`;

	// Let `node:child_process` pass the already-escaped command line through untouched
	parsed.options.windowsVerbatimArguments = true;
	return {
		file: external_node_process_namespaceObject.env.comspec || 'cmd.exe',
		// `/e:on` enables the command extensions the `%` escaping relies on, and `/v:off` disables delayed expansion so `!` is literal, even when the registry changes either default
		commandArguments: ['/d', '/e:on', '/v:off', '/s', '/c', commandLine],
		options: parsed.options,
	};
};

// Resolve the command's absolute path, then, if it is a shebang script, resolve its interpreter instead, since Windows cannot run shebangs natively
const resolveWithShebang = parsed => {
	const resolvedFile = resolvePath(parsed);
	const interpreter = resolvedFile !== undefined && readShebang(resolvedFile);
	if (!interpreter) {
		return resolvedFile;
	}

	// Run the interpreter with the script as its first argument, then resolve the interpreter's own path
	parsed.commandArguments.unshift(resolvedFile);
	parsed.file = interpreter;
	return resolvePath(parsed);
};

// Search `PATH` for the command, resolving its Windows executable extension via `PATHEXT`
const resolvePath = parsed => {
	const environment = parsed.options.env || external_node_process_namespaceObject.env;
	const cwd = parsed.options.cwd ?? external_node_process_namespaceObject.cwd();
	const environmentPathExt = getWindowsEnvironmentValue(environment, 'PATHEXT');
	const commandExtension = external_node_path_namespaceObject.extname(parsed.file);
	// Commands with an explicit extension must be tried verbatim so shebang scripts work even when their extension is excluded from PATHEXT.
	const pathExt = commandExtension === '' ? environmentPathExt : `${commandExtension}${external_node_path_namespaceObject.delimiter}${environmentPathExt ?? ''}`;
	if (hasWindowsPathSeparator(parsed.file)) {
		return whichCommandSync(external_node_path_namespaceObject.resolve(cwd, parsed.file), {cwd, pathExt});
	}

	const searchPath = getWindowsEnvironmentValue(environment, 'PATH') ?? getWindowsEnvironmentValue(external_node_process_namespaceObject.env, 'PATH') ?? '';
	const resolveOptions = {
		cwd,
		path: searchPath,
		pathExt,
	};

	return shouldSearchCurrentDirectory(environment) ? whichCommandSync(parsed.file, resolveOptions) : resolvePathDirectories(parsed.file, resolveOptions);
};

const hasWindowsPathSeparator = file => file.includes('/') || file.includes('\\') || file.includes(':');

const shouldSearchCurrentDirectory = environment => getWindowsEnvironmentValue(external_node_process_namespaceObject.env, 'NODEFAULTCURRENTDIRECTORYINEXEPATH') === undefined && getWindowsEnvironmentValue(environment, 'NODEFAULTCURRENTDIRECTORYINEXEPATH') === undefined;

const resolvePathDirectories = (file, {cwd, path: searchPath, pathExt}) => {
	for (const directory of searchPath.split(external_node_path_namespaceObject.delimiter)) {
		const unquotedDirectory = directory.length > 1 && directory.startsWith('"') && directory.endsWith('"') ? directory.slice(1, -1) : directory;
		if (unquotedDirectory === '') {
			continue;
		}

		const resolvedFile = whichCommandSync(external_node_path_namespaceObject.resolve(cwd, unquotedDirectory, file), {cwd, pathExt});
		if (resolvedFile !== undefined) {
			return resolvedFile;
		}
	}
};

// Node sorts Windows environment keys and uses the first case-insensitive match when spawning.
const getWindowsEnvironmentValue = (environment, name) => {
	const environmentKey = Object.keys(environment).sort().find(key => key.toUpperCase() === name);
	return environmentKey === undefined ? undefined : environment[environmentKey];
};

const SHEBANG_BYTE_LENGTH = 150;

// Read the file's first bytes to find its shebang interpreter, if it has one
const readShebang = file => {
	const buffer = external_node_buffer_namespaceObject.Buffer.alloc(SHEBANG_BYTE_LENGTH);
	let bytesRead = 0;

	try {
		const fileDescriptor = (0,external_node_fs_namespaceObject.openSync)(file, 'r');
		try {
			bytesRead = (0,external_node_fs_namespaceObject.readSync)(fileDescriptor, buffer, 0, SHEBANG_BYTE_LENGTH, 0);
		} finally {
			(0,external_node_fs_namespaceObject.closeSync)(fileDescriptor);
		}
	} catch {
		return undefined;
	}

	// A file shorter than the buffer leaves it zero-filled, so only the bytes actually read must be parsed.
	// Otherwise, a shebang line which is not terminated by a newline would include those `\0` characters.
	return parseShebang(buffer.toString('utf8', 0, bytesRead));
};

const shebangRegExp = /^#!(?<line>.*)/;

/*
Extract the interpreter from a shebang line, e.g. `#!/usr/bin/env node` -> `node`.
*/
const parseShebang = contents => {
	const shebangLine = contents.match(shebangRegExp)?.groups.line.trim();
	if (!shebangLine) {
		return undefined;
	}

	const [interpreterPath, argument] = shebangLine.split(' ', 2);
	const interpreter = interpreterPath.split('/').at(-1);
	if (interpreter === 'env') {
		return argument;
	}

	return argument ? `${interpreter} ${argument}` : interpreter;
};

const lineBreakRegExp = /[\n\r]/;

const assertNoLineBreak = value => {
	if (lineBreakRegExp.test(value)) {
		throw new TypeError(`The command and its arguments cannot contain a line break on Windows without a shell.\nThis would allow a command injection with \`cmd.exe\`.\nInvalid value: ${JSON.stringify(`${value}`)}`);
	}
};

// See https://web.archive.org/web/20241220221102/https://www.robvanderwoude.com/escapechars.php
// eslint-disable-next-line regexp/sort-character-class-elements
const metaCharsRegExp = /[()\][%!^"`<>&|;, *?]/g;

// Prefix every `cmd.exe` metacharacter with a caret to neutralize it. This is only used for the file, since arguments are quoted instead.
const escapeMetaChars = value => value.replaceAll(metaCharsRegExp, '^$&');

const backslashRunRegExp = /\\+/g;

// Matches any character requiring quoting: anything except ASCII letters, digits, a few punctuation characters that `cmd.exe` never interprets, and non-ASCII characters other than control characters
const quotedCharacterRegExp = /[^\w#$*+\-./:?@\\\u{80}-\u{10FFFF}]|\p{Control}/u;

/*
Escape an argument the same way as Rust's `std::process::Command` does for batch files, which fixed the "BatBadBut" vulnerability (CVE-2024-24576): https://github.com/rust-lang/rust/blob/main/library/std/src/sys/args/windows.rs (`append_bat_arg()`). yt-dlp uses the same algorithm.

Any argument containing a `cmd.exe` metacharacter is wrapped in double quotes, which keeps `cmd.exe` from interpreting it. `cmd.exe` might interpret it more than once: when invoking a batch file, then again when that batch file forwards it with `%*`, like npm cmd-shims do. Caret escaping depends on that count, so it breaks batch files reading their arguments directly with `%~1`, like Maven's `mvn.cmd`. Quoting does not, as long as the quotes stay balanced.

Rust only uses this for batch files. We use it for any file run through `cmd.exe`, since it is also correct when `cmd.exe` interprets the argument only once.

Limitations, which no escaping can fix since they depend on how the batch file uses its arguments:
- A batch file reading `%~1` gets the escaped argument without its surrounding quotes: double quotes are doubled, and trailing backslashes too.
- A batch file using `%~1` outside double quotes, or `%1` inside double quotes (like `if "%1" == ""`), lets `cmd.exe` interpret its metacharacters. Since `%1` includes the argument's surrounding quotes, the extra ones unquote it.
- A batch file forwarding its arguments with `call` expands `%` again, and one enabling delayed expansion expands `!` again.
*/
const escapeArgument = rawArgument => {
	/*
	Escape backslashes, following the algorithm at https://web.archive.org/web/20240930203505/https://qntm.org/cmd.

	A run of backslashes only needs doubling when it precedes a double quote, or the end of the argument since that becomes a double quote once the argument is wrapped below. Otherwise the backslashes would be taken as escaping that quote. Every double quote is then escaped in turn.

	Each backslash run is matched exactly once and consumed, so a long run cannot trigger the quadratic backtracking a naive pattern would, which would be a denial-of-service risk.

	Double quotes are escaped as `""` instead of `\"`. Both are a literal double quote inside a quoted argument for the subprocess, but only `""` keeps the quotes balanced for `cmd.exe`, which does not know about backslashes. Otherwise, the metacharacters after the double quote would not be quoted anymore, allowing command injection.

	`%` cannot be escaped inside double quotes, so it is replaced by `%%cd:~,%` instead. That is a literal `%` followed by an empty substring of the `%cd%` variable, which `cmd.exe` expands to nothing. This prevents `%VAR%` from being expanded.
	*/
	const argument = `${rawArgument}`;
	if (!shouldQuoteArgument(argument)) {
		return argument;
	}

	const escapedArgument = argument
		.replaceAll(backslashRunRegExp, (backslashes, offset, string) => {
			const nextCharacter = string[offset + backslashes.length];
			const isPrecedesDoubleQuote = nextCharacter === '"' || nextCharacter === undefined;
			return isPrecedesDoubleQuote ? backslashes.repeat(2) : backslashes;
		})
		.replaceAll('"', '""')
		.replaceAll('%', '%%cd:~,%');

	return `"${escapedArgument}"`;
};

/*
An empty argument must be quoted, otherwise it would be dropped.
An argument ending with a backslash must be quoted, otherwise a batch file wrapping it in double quotes, like `"%~1"`, would have that backslash escape its closing double quote.
Since `"` and `%` require quoting, an unquoted argument never needs any escaping.
*/
const shouldQuoteArgument = argument => argument === ''
	|| argument.endsWith('\\')
	|| quotedCharacterRegExp.test(argument);

;// CONCATENATED MODULE: ./node_modules/execa/lib/arguments/cwd.js





// Normalize `cwd` option
const normalizeCwd = (cwd = getDefaultCwd()) => {
	const cwdString = safeNormalizeFileUrl(cwd, 'The "cwd" option');
	return external_node_path_namespaceObject.resolve(cwdString);
};

const getDefaultCwd = () => {
	try {
		return external_node_process_namespaceObject.cwd();
	} catch (error) {
		error.message = `The current directory does not exist.\n${error.message}`;
		throw error;
	}
};

// `process.cwd()` throws if the current directory has been deleted.
// This is only used to improve an error message, so it must not throw itself, which would hide that error.
const getCurrentCwd = () => {
	try {
		return external_node_process_namespaceObject.cwd();
	} catch {}
};

// When `cwd` option has an invalid value, provide with a better error message
const fixCwdError = (originalMessage, cwd) => {
	if (cwd === getCurrentCwd()) {
		return originalMessage;
	}

	let cwdStat;
	try {
		cwdStat = (0,external_node_fs_namespaceObject.statSync)(cwd);
	} catch (error) {
		return `The "cwd" option is invalid: ${cwd}.\n${error.message}\n${originalMessage}`;
	}

	return cwdStat.isDirectory() ? originalMessage : `The "cwd" option is not a directory: ${cwd}.\n${originalMessage}`;
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/arguments/options.js

















const cmdExeRegExp = /^cmd(?:\.exe)?$/i;

// Normalize the options object, and sometimes also the file paths and arguments.
// Applies default values, validate allowed options, normalize them.
const normalizeOptions = (filePath, rawArguments, rawOptions) => {
	// Prevent prototype pollution by copying only own properties to a null-prototype object
	const sanitizedOptions = {__proto__: null, ...rawOptions};
	sanitizedOptions.cwd = normalizeCwd(sanitizedOptions.cwd);
	const [processedFile, processedArguments, processedOptions] = handleNodeOption(filePath, rawArguments, sanitizedOptions);
	const fdOptions = normalizeFdSpecificOptions(processedOptions);
	const options = addDefaultOptions(fdOptions);
	validateBooleanOptions(options);
	validateEnv(options);
	options.env = getEnv(options);

	const {file, commandArguments} = parseCommandFile(processedFile, processedArguments, options);

	validateTimeout(options);
	validateEncoding(options);
	validateIpcInputOption(options);
	validateCancelSignal(options);
	validateRenamedSignalOption(options);
	validateGracefulCancel(options);
	options.shell = normalizeFileUrl(options.shell);
	options.killSignal = normalizeKillSignal(options.killSignal);
	options.forceKillAfterDelay = normalizeForceKillAfterDelay(options.forceKillAfterDelay);
	options.lines = options.lines.map((lines, fdNumber) => lines && !BINARY_ENCODINGS.has(options.encoding) && options.buffer[fdNumber]);

	// The file is now an absolute path resolved via `PATHEXT`, so its extension might be uppercase (`cmd.EXE`)
	if (external_node_process_namespaceObject.platform === 'win32' && cmdExeRegExp.test(external_node_path_namespaceObject.basename(file))) {
		// #116
		commandArguments.unshift('/q');
	}

	return {file, commandArguments, options};
};

const BOOLEAN_OPTIONS = [
	'extendEnv',
	'preferLocal',
	'reject',
	'cleanup',
	'killDescendants',
	'all',
	'gracefulCancel',
	'ipc',
	'node',
];

// Wrong types must be reported instead of being silently coerced, e.g. the string 'false' enabling an option
const validateBooleanOptions = options => {
	for (const optionName of BOOLEAN_OPTIONS) {
		checkBooleanOption(options[optionName], optionName);
	}
};

// A non-object `env` would be spread into unrelated properties, e.g. its characters when a string
const validateEnv = ({env}) => {
	if (env !== undefined && (typeof env !== 'object' || env === null || Array.isArray(env))) {
		throw new TypeError(`The \`env\` option must be an object: ${String(env)}.`);
	}
};

// Use null prototype to prevent prototype pollution from leaking through
const addDefaultOptions = ({
	extendEnv = true,
	preferLocal = false,
	cwd,
	localDir: localDirectory = cwd,
	encoding = 'utf8',
	reject = true,
	cleanup = true,
	killDescendants = false,
	all = false,
	windowsHide = true,
	killSignal = 'SIGTERM',
	forceKillAfterDelay = true,
	gracefulCancel = false,
	ipcInput,
	ipc = ipcInput !== undefined || gracefulCancel,
	serialization = 'advanced',
	...options
}) => ({
	__proto__: null,
	...options,
	extendEnv,
	preferLocal,
	cwd,
	localDirectory,
	encoding,
	reject,
	cleanup,
	killDescendants,
	all,
	windowsHide,
	killSignal,
	forceKillAfterDelay,
	gracefulCancel,
	ipcInput,
	ipc,
	serialization,
});

/*
Keep a null prototype, otherwise a polluted `Object.prototype` would inject environment variables.
Unlike the other options, `child_process` intentionally passes the inherited properties of `env` to the subprocess, so they are the ones which must not leak. This includes `PATH`, which decides which file the command resolves to.
`npmRunPathEnv()` returns a plain object, so this is applied to its result too.
*/
const getEnv = options => ({__proto__: null, ...computeEnv(options)});

const computeEnv = ({env: envOption, extendEnv, preferLocal, node, localDirectory, nodePath}) => {
	// Spread `envOption` even when it is `undefined`, so `extendEnv: false` results in an empty environment instead of inheriting `process.env`
	const env = {__proto__: null, ...(extendEnv && external_node_process_namespaceObject.env), ...envOption};

	if (preferLocal || node) {
		return npmRunPathEnv({
			env,
			cwd: localDirectory,
			execPath: nodePath,
			preferLocal,
			addExecPath: node,
		});
	}

	return env;
};


;// CONCATENATED MODULE: ./node_modules/execa/lib/arguments/shell.js
// When the `shell` option is set, any command argument is concatenated as a single string by Node.js:
// https://github.com/nodejs/node/blob/e38ce27f3ca0a65f68a31cedd984cddb927d4002/lib/child_process.js#L614-L624
// However, since Node 24, it also prints a deprecation warning.
// To avoid this warning, we perform that same operation before calling `node:child_process`.
// Shells only understand strings, which is why Node.js performs that concatenation.
// However, we rely on users splitting command arguments as an array.
// For example, this allows us to easily detect which arguments are passed.
// So we do want users to pass array of arguments even with `shell: true`, but we also want to avoid any warning.
const concatenateShell = (file, commandArguments, options) => options.shell && commandArguments.length > 0
	? [[file, ...commandArguments].join(' '), [], options]
	: [file, commandArguments, options];

;// CONCATENATED MODULE: ./node_modules/execa/lib/transform/split.js


// Split chunks line-wise for generators passed to the `std*` options
const getSplitLinesGenerator = (binary, preserveNewlines, skipped, state) => binary || skipped
	? undefined
	: initializeSplitLines(preserveNewlines, state);

// Same but for synchronous methods
const splitLinesSync = (chunk, preserveNewlines, objectMode) => objectMode
	? chunk.flatMap(item => splitLinesItemSync(item, preserveNewlines))
	: splitLinesItemSync(chunk, preserveNewlines);

const splitLinesItemSync = (chunk, preserveNewlines) => {
	const {transform, final} = initializeSplitLines(preserveNewlines, {});
	return [...transform(chunk), ...final()];
};

const initializeSplitLines = (preserveNewlines, state) => {
	state.previousChunks = '';
	return {
		transform: splitGenerator.bind(undefined, state, preserveNewlines),
		final: linesFinal.bind(undefined, state),
	};
};

// This imperative logic is much faster than using `String.split()` and uses very low memory.
const splitGenerator = function * (state, preserveNewlines, chunk) {
	if (typeof chunk !== 'string') {
		yield chunk;
		return;
	}

	let {previousChunks} = state;
	let start = -1;

	for (let end = 0; end < chunk.length; end += 1) {
		if (chunk[end] !== '\n') {
			continue;
		}

		// The `\r` of a `\r\n` sequence is stripped further below, once `previousChunks` has been prepended.
		// Otherwise, a `\r\n` sequence split across two chunks would not be detected.
		let line = chunk.slice(start + 1, preserveNewlines ? end + 1 : end);

		if (previousChunks.length > 0) {
			line = concatString(previousChunks, line);
			previousChunks = '';
		}

		yield preserveNewlines ? line : stripCarriageReturn(line, state);
		start = end;
	}

	if (start !== chunk.length - 1) {
		previousChunks = concatString(previousChunks, chunk.slice(start + 1));
	}

	state.previousChunks = previousChunks;
};

const stripCarriageReturn = (line, state) => {
	state.isWindowsNewline = line.endsWith('\r');
	return state.isWindowsNewline ? line.slice(0, -1) : line;
};

const linesFinal = function * ({previousChunks}) {
	if (previousChunks.length > 0) {
		yield previousChunks;
	}
};

// Unless `preserveNewlines: true` is used, we strip the newline of each line.
// This re-adds them after the user `transform` code has run.
// The re-added newline must be encoded with the `encoding` option when the chunk is bytes: a UTF-8 newline would misalign `utf16le` bytes.
const getAppendNewlineGenerator = ({binary, preserveNewlines, readableObjectMode, state, encoding}) => binary || preserveNewlines || readableObjectMode
	? undefined
	: {transform: appendNewlineGenerator.bind(undefined, state, getStringEncoding(binary, encoding))};

const appendNewlineGenerator = function * ({isWindowsNewline = false}, stringEncoding, chunk) {
	const {unixNewline, windowsNewline, concat} = typeof chunk === 'string'
		? linesStringInfo
		: LINES_BYTES_INFO[stringEncoding];

	if (endsWithNewline(chunk, unixNewline)) {
		yield chunk;
		return;
	}

	const newline = isWindowsNewline ? windowsNewline : unixNewline;
	yield concat(chunk, newline);
};

const endsWithNewline = (chunk, unixNewline) => typeof chunk === 'string'
	? chunk.endsWith(unixNewline)
	: chunk.length >= unixNewline.length
		&& chunk.subarray(-unixNewline.length).every((byte, index) => byte === unixNewline[index]);

const concatString = (firstChunk, secondChunk) => `${firstChunk}${secondChunk}`;

const linesStringInfo = {
	windowsNewline: '\r\n',
	unixNewline: '\n',
	concat: concatString,
};

const concatUint8Array = (firstChunk, secondChunk) => {
	const chunk = new Uint8Array(firstChunk.length + secondChunk.length);
	chunk.set(firstChunk, 0);
	chunk.set(secondChunk, firstChunk.length);
	return chunk;
};

// Only indexed with text encodings, since the `binary` option and binary encodings disable this generator
const LINES_BYTES_INFO = {
	__proto__: null,
	utf8: {
		windowsNewline: new Uint8Array([0x0D, 0x0A]),
		unixNewline: new Uint8Array([0x0A]),
		concat: concatUint8Array,
	},
	utf16le: {
		windowsNewline: new Uint8Array([0x0D, 0x00, 0x0A, 0x00]),
		unixNewline: new Uint8Array([0x0A, 0x00]),
		concat: concatUint8Array,
	},
};

;// CONCATENATED MODULE: ./node_modules/strip-final-newline/index.js
function strip_final_newline_stripFinalNewline(input) {
	if (typeof input === 'string') {
		return stripFinalNewlineString(input);
	}

	if (!(ArrayBuffer.isView(input) && input.BYTES_PER_ELEMENT === 1)) {
		throw new Error('Input must be a string or a Uint8Array');
	}

	return stripFinalNewlineBinary(input);
}

const stripFinalNewlineString = input =>
	input.at(-1) === LF
		? input.slice(0, input.at(-2) === CR ? -2 : -1)
		: input;

const stripFinalNewlineBinary = input =>
	input.at(-1) === LF_BINARY
		? input.subarray(0, input.at(-2) === CR_BINARY ? -2 : -1)
		: input;

const LF = '\n';
const LF_BINARY = LF.codePointAt(0);
const CR = '\r';
const CR_BINARY = CR.codePointAt(0);

;// CONCATENATED MODULE: ./node_modules/execa/lib/io/strip-newline.js


// Apply `stripFinalNewline` option, which applies to `result.stdout|stderr|all|stdio[*]`.
// If the `lines` option is used, it is applied on each line, but using a different function.
const stripNewline = (value, {stripFinalNewline}, fdNumber, allFds) => value !== undefined && !Array.isArray(value) && getStripFinalNewline(stripFinalNewline, fdNumber, allFds)
	? strip_final_newline_stripFinalNewline(value)
	: value;

// Retrieve `stripFinalNewline` option value, including with `subprocess.all`
// With `subprocess.all`, `allFds` are the file descriptors it actually interleaves. Only those are considered, otherwise a single one would be stripped because another one defaults to being stripped.
const getStripFinalNewline = (stripFinalNewline, fdNumber, allFds) => fdNumber === 'all'
	? allFds.some(allFd => stripFinalNewline[allFd])
	: stripFinalNewline[fdNumber];

;// CONCATENATED MODULE: ./node_modules/execa/lib/resolve/all-sync.js





// The file descriptors which `result.all` interleaves. Those are the ones with an output, like with the `all` stream.
const getAllSyncFds = ([, stdout, stderr]) => [
	...(stdout === undefined ? [] : [1]),
	...(stderr === undefined ? [] : [2]),
];

// Retrieve `result.all` with synchronous methods
const getAllSync = ([, stdout, stderr], allFds, options) => {
	if (!options.all) {
		return;
	}

	if (stdout === undefined) {
		return splitAllLines(stderr, allFds, options);
	}

	if (stderr === undefined) {
		return splitAllLines(stdout, allFds, options);
	}

	// Like asynchronous methods, `all` is split into lines as soon as the `lines` option applies to either file descriptor.
	// A file descriptor which uses the `lines` option is already split with its own `stripFinalNewline` value, like `result.stdout` and `result.stderr` are. The other one is split with the `stripFinalNewline` value of `result.all`.
	// This differs from asynchronous methods, which cannot tell which file descriptor the merged output's last newline belongs to.
	if (hasLines(options)) {
		return [splitAllLines(stdout, allFds, options), splitAllLines(stderr, allFds, options)].flat();
	}

	// Without the `lines` option, arrays can only come from object mode, which does not apply to the other file descriptor.
	// Like asynchronous methods, that other file descriptor is omitted when it is empty.
	if (Array.isArray(stdout) || Array.isArray(stderr)) {
		return [stdout, stderr].filter(value => value.length > 0).flat();
	}

	if (isUint8Array(stdout) && isUint8Array(stderr)) {
		return concatUint8Arrays([stdout, stderr]);
	}

	return BASE64_ENCODINGS.has(options.encoding) ? concatBase64(stdout, stderr, options.encoding) : `${stdout}${stderr}`;
};

// Unlike other encodings, base64 strings cannot be concatenated, since the first one might end with padding
const concatBase64 = (stdout, stderr, encoding) => external_node_buffer_namespaceObject.Buffer.concat([external_node_buffer_namespaceObject.Buffer.from(stdout, encoding), external_node_buffer_namespaceObject.Buffer.from(stderr, encoding)]).toString(encoding);

const BASE64_ENCODINGS = new Set(['base64', 'base64url']);

const hasLines = ({lines}) => Boolean(lines[1] || lines[2]);

// Each file descriptor is either already split into lines, or is a string which still needs to be split
const splitAllLines = (value, allFds, options) => value === undefined || Array.isArray(value) || !hasLines(options)
	? value
	: splitLinesSync(value, !getStripFinalNewline(options.stripFinalNewline, 'all', allFds), false);

;// CONCATENATED MODULE: ./node_modules/get-stream/node_modules/is-stream/index.js
function isStream(stream, {checkOpen = true} = {}) {
	return stream !== null
		&& typeof stream === 'object'
		&& (stream.writable || stream.readable || !checkOpen || (stream.writable === undefined && stream.readable === undefined))
		&& typeof stream.pipe === 'function';
}

function isWritableStream(stream, {checkOpen = true} = {}) {
	return isStream(stream, {checkOpen})
		&& (stream.writable || !checkOpen)
		&& typeof stream.write === 'function'
		&& typeof stream.end === 'function'
		&& typeof stream.writable === 'boolean'
		&& typeof stream.writableObjectMode === 'boolean'
		&& typeof stream.destroy === 'function'
		&& typeof stream.destroyed === 'boolean';
}

function isReadableStream(stream, {checkOpen = true} = {}) {
	return isStream(stream, {checkOpen})
		&& (stream.readable || !checkOpen)
		&& typeof stream.read === 'function'
		&& typeof stream.readable === 'boolean'
		&& typeof stream.readableObjectMode === 'boolean'
		&& typeof stream.destroy === 'function'
		&& typeof stream.destroyed === 'boolean';
}

function isDuplexStream(stream, options) {
	return isWritableStream(stream, options)
		&& isReadableStream(stream, options);
}

function isTransformStream(stream, options) {
	return isDuplexStream(stream, options)
		&& typeof stream._transform === 'function';
}

;// CONCATENATED MODULE: ./node_modules/@sec-ant/readable-stream/dist/ponyfill/asyncIterator.js
const a = Object.getPrototypeOf(
  Object.getPrototypeOf(
    /* istanbul ignore next */
    async function* () {
    }
  ).prototype
);
class c {
  #t;
  #n;
  #r = !1;
  #e = void 0;
  constructor(e, t) {
    this.#t = e, this.#n = t;
  }
  next() {
    const e = () => this.#s();
    return this.#e = this.#e ? this.#e.then(e, e) : e(), this.#e;
  }
  return(e) {
    const t = () => this.#i(e);
    return this.#e ? this.#e.then(t, t) : t();
  }
  async #s() {
    if (this.#r)
      return {
        done: !0,
        value: void 0
      };
    let e;
    try {
      e = await this.#t.read();
    } catch (t) {
      throw this.#e = void 0, this.#r = !0, this.#t.releaseLock(), t;
    }
    return e.done && (this.#e = void 0, this.#r = !0, this.#t.releaseLock()), e;
  }
  async #i(e) {
    if (this.#r)
      return {
        done: !0,
        value: e
      };
    if (this.#r = !0, !this.#n) {
      const t = this.#t.cancel(e);
      return this.#t.releaseLock(), await t, {
        done: !0,
        value: e
      };
    }
    return this.#t.releaseLock(), {
      done: !0,
      value: e
    };
  }
}
const n = Symbol();
function i() {
  return this[n].next();
}
Object.defineProperty(i, "name", { value: "next" });
function o(r) {
  return this[n].return(r);
}
Object.defineProperty(o, "name", { value: "return" });
const u = Object.create(a, {
  next: {
    enumerable: !0,
    configurable: !0,
    writable: !0,
    value: i
  },
  return: {
    enumerable: !0,
    configurable: !0,
    writable: !0,
    value: o
  }
});
function h({ preventCancel: r = !1 } = {}) {
  const e = this.getReader(), t = new c(
    e,
    r
  ), s = Object.create(u);
  return s[n] = t, s;
}


;// CONCATENATED MODULE: ./node_modules/@sec-ant/readable-stream/dist/ponyfill/index.js




;// CONCATENATED MODULE: ./node_modules/get-stream/source/stream.js



const getAsyncIterable = stream => {
	if (isReadableStream(stream, {checkOpen: false}) && nodeImports.on !== undefined) {
		return getStreamIterable(stream);
	}

	if (typeof stream?.[Symbol.asyncIterator] === 'function') {
		return stream;
	}

	// `ReadableStream[Symbol.asyncIterator]` support is missing in multiple browsers, so we ponyfill it
	if (stream_toString.call(stream) === '[object ReadableStream]') {
		return h.call(stream);
	}

	throw new TypeError('The first argument must be a Readable, a ReadableStream, or an async iterable.');
};

const {toString: stream_toString} = Object.prototype;

// The default iterable for Node.js streams does not allow for multiple readers at once, so we re-implement it
const getStreamIterable = async function * (stream) {
	const controller = new AbortController();
	const state = {};
	handleStreamEnd(stream, controller, state);

	try {
		for await (const [chunk] of nodeImports.on(stream, 'data', {signal: controller.signal})) {
			yield chunk;
		}
	} catch (error) {
		// Stream failure, for example due to `stream.destroy(error)`
		if (state.error !== undefined) {
			throw state.error;
		// `error` event directly emitted on stream
		} else if (!controller.signal.aborted) {
			throw error;
		// Otherwise, stream completed successfully
		}
		// The `finally` block also runs when the caller throws, for example due to the `maxBuffer` option
	} finally {
		stream.destroy();
	}
};

const handleStreamEnd = async (stream, controller, state) => {
	try {
		await nodeImports.finished(stream, {
			cleanup: true,
			readable: true,
			writable: false,
			error: false,
		});
	} catch (error) {
		state.error = error;
	} finally {
		controller.abort();
	}
};

// Loaded by the Node entrypoint, but not by the browser one.
// This prevents using dynamic imports.
const nodeImports = {};

;// CONCATENATED MODULE: ./node_modules/get-stream/source/contents.js


const getStreamContents = async (stream, {init, convertChunk, getSize, truncateChunk, addChunk, getFinalChunk, finalize}, {maxBuffer = Number.POSITIVE_INFINITY} = {}) => {
	const asyncIterable = getAsyncIterable(stream);

	const state = init();
	state.length = 0;

	try {
		for await (const chunk of asyncIterable) {
			const chunkType = getChunkType(chunk);
			const convertedChunk = convertChunk[chunkType](chunk, state);
			appendChunk({
				convertedChunk,
				state,
				getSize,
				truncateChunk,
				addChunk,
				maxBuffer,
			});
		}

		appendFinalChunk({
			state,
			convertChunk,
			getSize,
			truncateChunk,
			addChunk,
			getFinalChunk,
			maxBuffer,
		});
		return finalize(state);
	} catch (error) {
		const normalizedError = typeof error === 'object' && error !== null ? error : new Error(error);
		normalizedError.bufferedData = finalize(state);
		throw normalizedError;
	}
};

const appendFinalChunk = ({state, getSize, truncateChunk, addChunk, getFinalChunk, maxBuffer}) => {
	const convertedChunk = getFinalChunk(state);
	if (convertedChunk !== undefined) {
		appendChunk({
			convertedChunk,
			state,
			getSize,
			truncateChunk,
			addChunk,
			maxBuffer,
		});
	}
};

const appendChunk = ({convertedChunk, state, getSize, truncateChunk, addChunk, maxBuffer}) => {
	const chunkSize = getSize(convertedChunk);
	const newLength = state.length + chunkSize;

	if (newLength <= maxBuffer) {
		addNewChunk(convertedChunk, state, addChunk, newLength);
		return;
	}

	const truncatedChunk = truncateChunk(convertedChunk, maxBuffer - state.length);

	if (truncatedChunk !== undefined) {
		addNewChunk(truncatedChunk, state, addChunk, maxBuffer);
	}

	throw new MaxBufferError();
};

const addNewChunk = (convertedChunk, state, addChunk, newLength) => {
	state.contents = addChunk(convertedChunk, state, newLength);
	state.length = newLength;
};

const getChunkType = chunk => {
	const typeOfChunk = typeof chunk;

	if (typeOfChunk === 'string') {
		return 'string';
	}

	if (typeOfChunk !== 'object' || chunk === null) {
		return 'others';
	}

	if (globalThis.Buffer?.isBuffer(chunk)) {
		return 'buffer';
	}

	const prototypeName = contents_objectToString.call(chunk);

	if (prototypeName === '[object ArrayBuffer]') {
		return 'arrayBuffer';
	}

	if (prototypeName === '[object DataView]') {
		return 'dataView';
	}

	if (
		Number.isInteger(chunk.byteLength)
		&& Number.isInteger(chunk.byteOffset)
		&& contents_objectToString.call(chunk.buffer) === '[object ArrayBuffer]'
	) {
		return 'typedArray';
	}

	return 'others';
};

const {toString: contents_objectToString} = Object.prototype;

class MaxBufferError extends Error {
	name = 'MaxBufferError';

	constructor() {
		super('maxBuffer exceeded');
	}
}

;// CONCATENATED MODULE: ./node_modules/execa/lib/io/max-buffer.js




// When the `maxBuffer` option is hit, a MaxBufferError is thrown.
// The stream is aborted, then specific information is kept for the error message.
const handleMaxBuffer = ({error, stream, readableObjectMode, lines, encoding, fdNumber}) => {
	if (!(error instanceof MaxBufferError)) {
		throw error;
	}

	if (fdNumber === 'all') {
		return error;
	}

	const unit = getMaxBufferUnit(readableObjectMode, lines, encoding);
	error.maxBufferInfo = {fdNumber, unit};
	stream.destroy();
	throw error;
};

const getMaxBufferUnit = (readableObjectMode, lines, encoding) => {
	if (readableObjectMode) {
		return 'objects';
	}

	if (lines) {
		return 'lines';
	}

	return encoding === 'buffer' ? 'bytes' : 'characters';
};

// Check the `maxBuffer` option with `result.ipcOutput`, before buffering one more message.
// Like the stream-based `maxBuffer`, the threshold is hit when the buffered amount would exceed it, which also applies to non-integer values.
const checkIpcMaxBuffer = (ipcOutput, maxBuffer) => {
	if (ipcOutput.length + 1 <= maxBuffer) {
		return;
	}

	const error = new MaxBufferError();
	error.maxBufferInfo = {fdNumber: 'ipc'};
	throw error;
};

// Error message when `maxBuffer` is hit
const getMaxBufferMessage = (error, maxBuffer) => {
	const {streamName, threshold, unit} = getMaxBufferInfo(error, maxBuffer);
	return `Command's ${streamName} was larger than ${threshold} ${unit}`;
};

const getMaxBufferInfo = (error, maxBuffer) => {
	if (error?.maxBufferInfo === undefined) {
		return {streamName: 'output', threshold: maxBuffer[1], unit: 'bytes'};
	}

	const {maxBufferInfo: {fdNumber, unit, threshold = getFdSpecificValue(maxBuffer, fdNumber)}} = error;
	delete error.maxBufferInfo;

	return fdNumber === 'ipc' ? {streamName: 'IPC output', threshold, unit: 'messages'} : {streamName: getStreamName(fdNumber), threshold, unit};
};

// The native `maxBuffer` option passed to `spawnSync()` does not allow differentiating values per file descriptor, so we use `stdout`'s.
// Since each other file descriptor's own limit is capped by `stdout`'s, this is also the highest one.
// Node.js applies it to the total output of all piped file descriptors, not to each of them. When it is hit, the subprocess is killed and a `ENOBUFS` error is thrown.
// Node.js disables its limit at zero, so use the smallest positive value to reject the first output byte.
const getMaxBufferSync = ([, stdoutMaxBuffer]) => stdoutMaxBuffer === 0 ? Number.MIN_VALUE : stdoutMaxBuffer;

// File descriptors with a limit lower than `spawnSync()`'s native `maxBuffer` are enforced from the output, after the subprocess exits.
// Since no native error was thrown, we create the `ENOBUFS` error ourselves.
// Like with asynchronous methods, file descriptors which are not buffered are not limited by their own value. However, when they are piped, e.g. to a file, they still count towards the native limit, which is `stdout`'s value.
const handleMaxBufferSync = ({resultError, output, maxBuffer, buffer}) => {
	const fdNumber = findMaxBufferSync(output, maxBuffer, buffer);
	if (fdNumber === undefined) {
		// The native limit can be hit by the total output without any single file descriptor being over its own limit
		return {resultError, isMaxBuffer: resultError?.code === 'ENOBUFS'};
	}

	const threshold = getMaxBufferValueSync(maxBuffer, fdNumber);
	const error = resultError ?? Object.assign(new MaxBufferError(), {code: 'ENOBUFS'});
	error.maxBufferInfo = {fdNumber, unit: 'bytes', threshold};
	return {resultError: error, isMaxBuffer: true};
};

const findMaxBufferSync = (output, maxBuffer, buffer) => {
	if (output === null) {
		return;
	}

	const fdNumber = output.findIndex((result, index) => result !== null
		&& buffer[index]
		&& result.length > getMaxBufferValueSync(maxBuffer, index));
	return fdNumber === -1 ? undefined : fdNumber;
};

// `spawnSync()` uses `maxBuffer.stdout` as its native `maxBuffer`, so other file descriptors' limits can only be lower than that
const getMaxBufferValueSync = (maxBuffer, fdNumber) => Math.min(maxBuffer[1], maxBuffer[fdNumber]);

// When `maxBuffer` is hit, ensure each buffered file descriptor's result is truncated at its own limit
const truncateMaxBufferSync = (result, fdNumber, {maxBuffer, buffer}) => {
	const maxBufferValue = getMaxBufferValueSync(maxBuffer, fdNumber);
	return buffer[fdNumber] && result.length > maxBufferValue ? result.slice(0, maxBufferValue) : result;
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/return/message.js









// Computes `error.message`, `error.shortMessage` and `error.originalMessage`
const createMessages = ({
	stdio,
	all,
	ipcOutput,
	originalError,
	signal,
	signalDescription,
	exitCode,
	escapedCommand,
	timedOut,
	isCanceled,
	isGracefullyCanceled,
	isMaxBuffer,
	isForcefullyTerminated,
	forceKillAfterDelay,
	killSignal,
	maxBuffer,
	timeout,
	cwd,
}) => {
	const errorCode = getErrorCode(originalError);
	const prefix = getErrorPrefix({
		originalError,
		timedOut,
		timeout,
		isMaxBuffer,
		maxBuffer,
		errorCode,
		signal,
		signalDescription,
		exitCode,
		isCanceled,
		isGracefullyCanceled,
		isForcefullyTerminated,
		forceKillAfterDelay,
		killSignal,
	});
	const originalMessage = getOriginalMessage(originalError, cwd);
	const suffix = originalMessage === undefined ? '' : `\n${originalMessage}`;
	const shortMessage = `${prefix}: ${escapedCommand}${suffix}`;
	const messageStdio = all === undefined ? [stdio[2], stdio[1]] : [all];
	const message = [
		shortMessage,
		...messageStdio,
		...stdio.slice(3),
		ipcOutput.map(ipcMessage => serializeIpcMessage(ipcMessage)).join('\n'),
	]
		.map(messagePart => escapeLines(strip_final_newline_stripFinalNewline(serializeMessagePart(messagePart))))
		.filter(Boolean)
		.join('\n\n');
	return {originalMessage, shortMessage, message};
};

// `DOMException`, e.g. the default `cancelSignal` reason, has a legacy numeric `code`, which is not an error code like `ENOENT`
const getErrorCode = error => typeof error?.code === 'string' ? error.code : undefined;

const getErrorPrefix = ({
	originalError,
	timedOut,
	timeout,
	isMaxBuffer,
	maxBuffer,
	errorCode,
	signal,
	signalDescription,
	exitCode,
	isCanceled,
	isGracefullyCanceled,
	isForcefullyTerminated,
	forceKillAfterDelay,
	killSignal,
}) => {
	const forcefulSuffix = getForcefulSuffix(isForcefullyTerminated, forceKillAfterDelay);

	if (timedOut) {
		return `Command timed out after ${timeout} milliseconds${forcefulSuffix}`;
	}

	if (isGracefullyCanceled) {
		if (signal === undefined) {
			return `Command was gracefully canceled with exit code ${exitCode}`;
		}

		return isForcefullyTerminated
			? `Command was gracefully canceled${forcefulSuffix}`
			: `Command was gracefully canceled with ${signal} (${signalDescription})`;
	}

	if (isCanceled) {
		return `Command was canceled${forcefulSuffix}`;
	}

	if (isMaxBuffer) {
		return `${getMaxBufferMessage(originalError, maxBuffer)}${forcefulSuffix}`;
	}

	if (errorCode !== undefined) {
		return `Command failed with ${errorCode}${forcefulSuffix}`;
	}

	if (isForcefullyTerminated) {
		return `Command was killed with ${killSignal} (${getSignalDescription(killSignal)})${forcefulSuffix}`;
	}

	if (signal !== undefined) {
		return `Command was killed with ${signal} (${signalDescription})`;
	}

	return exitCode === undefined ? 'Command failed' : `Command failed with exit code ${exitCode}`;
};

const getForcefulSuffix = (isForcefullyTerminated, forceKillAfterDelay) => isForcefullyTerminated
	? ` and was forcefully terminated after ${forceKillAfterDelay} milliseconds`
	: '';

const getOriginalMessage = (originalError, cwd) => {
	if (originalError instanceof DiscardedError) {
		return;
	}

	// An `ExecaError` has no `originalMessage` when it was not caused by another error, e.g. with a non-zero exit code
	const originalMessage = isExecaError(originalError)
		? originalError.originalMessage ?? ''
		: String(originalError?.message ?? originalError);
	const escapedOriginalMessage = escapeLines(fixCwdError(originalMessage, cwd));
	return escapedOriginalMessage === '' ? undefined : escapedOriginalMessage;
};

const serializeIpcMessage = ipcMessage => typeof ipcMessage === 'string'
	? ipcMessage
	: (0,external_node_util_namespaceObject.inspect)(ipcMessage);

// With the `lines` option, empty lines are kept. Only objects are omitted.
const serializeMessagePart = messagePart => Array.isArray(messagePart)
	? messagePart.filter(messageItem => isTextItem(messageItem)).map(messageItem => strip_final_newline_stripFinalNewline(serializeMessageItem(messageItem))).join('\n')
	: serializeMessageItem(messagePart);

const isTextItem = messageItem => typeof messageItem === 'string' || isUint8Array(messageItem);

const serializeMessageItem = messageItem => {
	if (typeof messageItem === 'string') {
		return messageItem;
	}

	return isUint8Array(messageItem) ? uint8ArrayToString(messageItem) : '';
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/return/result.js






// Object returned on subprocess success
const makeSuccessResult = ({
	command,
	escapedCommand,
	stdio,
	all,
	ipcOutput,
	options: {cwd},
	startTime,
}) => omitUndefinedProperties({
	command,
	escapedCommand,
	cwd,
	durationMs: getDurationMs(startTime),
	failed: false,
	timedOut: false,
	isCanceled: false,
	isGracefullyCanceled: false,
	isTerminated: false,
	isMaxBuffer: false,
	isForcefullyTerminated: false,
	exitCode: 0,
	stdout: stdio[1],
	stderr: stdio[2],
	all,
	stdio,
	ipcOutput,
	pipedFrom: [],
});

// Object returned on subprocess failure before spawning
const makeEarlyError = ({
	error,
	command,
	escapedCommand,
	fileDescriptors,
	options,
	startTime,
	isSync,
	stdio = Array.from({length: fileDescriptors.length}),
	all,
}) => makeError({
	error,
	command,
	escapedCommand,
	startTime,
	timedOut: false,
	isCanceled: false,
	isGracefullyCanceled: false,
	isMaxBuffer: false,
	isForcefullyTerminated: false,
	stdio,
	all,
	ipcOutput: [],
	options,
	isSync,
});

// When the subprocess fails to spawn, its output is empty, with the same shape as when it spawns but prints nothing
const getEarlyErrorOutput = (fileDescriptors, options) => {
	const stdio = fileDescriptors.map((fileDescriptor, fdNumber) => getEmptyOutput(fileDescriptor, fdNumber, options));
	return {stdio, all: getAllSync(stdio, getAllSyncFds(stdio), options)};
};

const getEmptyOutput = ({direction, objectMode}, fdNumber, {stdio, buffer, lines, encoding}) => {
	if (direction === 'input' || !PIPED_STDIO.has(stdio[fdNumber]) || !buffer[fdNumber]) {
		return;
	}

	if (objectMode || lines[fdNumber]) {
		return [];
	}

	return encoding === 'buffer' ? new Uint8Array() : '';
};

const PIPED_STDIO = new Set(['pipe', 'overlapped']);

// Object returned on subprocess failure
const makeError = ({
	error: originalError,
	command,
	escapedCommand,
	startTime,
	timedOut,
	isCanceled,
	isGracefullyCanceled,
	isMaxBuffer,
	isForcefullyTerminated,
	exitCode: rawExitCode,
	signal: rawSignal,
	stdio,
	all,
	ipcOutput,
	options: {
		timeoutDuration,
		timeout = timeoutDuration,
		forceKillAfterDelay,
		killSignal,
		cwd,
		maxBuffer,
	},
	isSync,
}) => {
	const {exitCode, signal, signalDescription} = normalizeExitPayload(rawExitCode, rawSignal);
	const {originalMessage, shortMessage, message} = createMessages({
		stdio,
		all,
		ipcOutput,
		originalError,
		signal,
		signalDescription,
		exitCode,
		escapedCommand,
		timedOut,
		isCanceled,
		isGracefullyCanceled,
		isMaxBuffer,
		isForcefullyTerminated,
		forceKillAfterDelay,
		killSignal,
		maxBuffer,
		timeout,
		cwd,
	});
	const error = getFinalError(originalError, message, isSync);
	Object.assign(error, getErrorProperties({
		error,
		command,
		escapedCommand,
		startTime,
		timedOut,
		isCanceled,
		isGracefullyCanceled,
		isMaxBuffer,
		isForcefullyTerminated,
		exitCode,
		signal,
		signalDescription,
		stdio,
		all,
		ipcOutput,
		cwd,
		originalMessage,
		shortMessage,
	}));
	return error;
};

const getErrorProperties = ({
	error,
	command,
	escapedCommand,
	startTime,
	timedOut,
	isCanceled,
	isGracefullyCanceled,
	isMaxBuffer,
	isForcefullyTerminated,
	exitCode,
	signal,
	signalDescription,
	stdio,
	all,
	ipcOutput,
	cwd,
	originalMessage,
	shortMessage,
}) => omitUndefinedProperties({
	shortMessage,
	originalMessage,
	command,
	escapedCommand,
	cwd,
	durationMs: getDurationMs(startTime),
	failed: true,
	timedOut,
	isCanceled,
	isGracefullyCanceled,
	isTerminated: signal !== undefined,
	isMaxBuffer,
	isForcefullyTerminated,
	exitCode,
	signal,
	signalDescription,
	code: getErrorCode(error.cause),
	stdout: stdio[1],
	stderr: stdio[2],
	all,
	stdio,
	ipcOutput,
	pipedFrom: [],
});

const omitUndefinedProperties = result => Object.fromEntries(Object.entries(result).filter(([, value]) => value !== undefined));

// `signal` and `exitCode` emitted on `subprocess.on('exit')` event can be `null`.
// We normalize them to `undefined`
const normalizeExitPayload = (rawExitCode, rawSignal) => {
	const exitCode = rawExitCode === null ? undefined : rawExitCode;
	const signal = rawSignal === null ? undefined : rawSignal;
	const signalDescription = signal === undefined ? undefined : getSignalDescription(rawSignal);
	return {exitCode, signal, signalDescription};
};

;// CONCATENATED MODULE: ./node_modules/parse-ms/index.js
const toZeroIfInfinity = value => Number.isFinite(value) ? value : 0;

function parseNumber(milliseconds) {
	return {
		days: Math.trunc(milliseconds / 86_400_000),
		hours: Math.trunc(milliseconds / 3_600_000 % 24),
		minutes: Math.trunc(milliseconds / 60_000 % 60),
		seconds: Math.trunc(milliseconds / 1000 % 60),
		milliseconds: Math.trunc(milliseconds % 1000),
		microseconds: Math.trunc(toZeroIfInfinity(milliseconds * 1000) % 1000),
		nanoseconds: Math.trunc(toZeroIfInfinity(milliseconds * 1e6) % 1000),
	};
}

function parseBigint(milliseconds) {
	return {
		days: milliseconds / 86_400_000n,
		hours: milliseconds / 3_600_000n % 24n,
		minutes: milliseconds / 60_000n % 60n,
		seconds: milliseconds / 1000n % 60n,
		milliseconds: milliseconds % 1000n,
		microseconds: 0n,
		nanoseconds: 0n,
	};
}

function parseMilliseconds(milliseconds) {
	switch (typeof milliseconds) {
		case 'number': {
			if (Number.isFinite(milliseconds)) {
				return parseNumber(milliseconds);
			}

			break;
		}

		case 'bigint': {
			return parseBigint(milliseconds);
		}

		// No default
	}

	throw new TypeError('Expected a finite number or bigint');
}

;// CONCATENATED MODULE: ./node_modules/pretty-ms/index.js


const isZero = value => value === 0 || value === 0n;
const pluralize = (word, count) => (count === 1 || count === 1n) ? word : `${word}s`;

const SECOND_ROUNDING_EPSILON = 0.000_000_1;
const ONE_DAY_IN_MILLISECONDS = 24n * 60n * 60n * 1000n;

function prettyMilliseconds(milliseconds, options) {
	const isBigInt = typeof milliseconds === 'bigint';
	if (!isBigInt && !Number.isFinite(milliseconds)) {
		throw new TypeError('Expected a finite number or bigint');
	}

	options = {...options};

	const sign = milliseconds < 0 ? '-' : '';
	milliseconds = milliseconds < 0 ? -milliseconds : milliseconds; // Cannot use `Math.abs()` because of BigInt support.

	if (options.colonNotation) {
		options.compact = false;
		options.formatSubMilliseconds = false;
		options.separateMilliseconds = false;
		options.verbose = false;
	}

	if (options.compact) {
		options.unitCount = 1;
		options.secondsDecimalDigits = 0;
		options.millisecondsDecimalDigits = 0;
	}

	let result = [];

	const floorDecimals = (value, decimalDigits) => {
		const flooredInterimValue = Math.floor((value * (10 ** decimalDigits)) + SECOND_ROUNDING_EPSILON);
		const flooredValue = Math.round(flooredInterimValue) / (10 ** decimalDigits);
		return flooredValue.toFixed(decimalDigits);
	};

	const add = (value, long, short, valueString) => {
		if (
			(result.length === 0 || !options.colonNotation)
			&& isZero(value)
			&& !(options.colonNotation && short === 'm')) {
			return;
		}

		valueString ??= String(value);
		if (options.colonNotation) {
			const wholeDigits = valueString.includes('.') ? valueString.split('.')[0].length : valueString.length;
			const minLength = result.length > 0 ? 2 : 1;
			valueString = '0'.repeat(Math.max(0, minLength - wholeDigits)) + valueString;
		} else {
			valueString += options.verbose ? ' ' + pluralize(long, value) : short;
		}

		result.push(valueString);
	};

	const parsed = parseMilliseconds(milliseconds);
	const days = BigInt(parsed.days);

	if (options.hideYearAndDays) {
		add((BigInt(days) * 24n) + BigInt(parsed.hours), 'hour', 'h');
	} else {
		if (options.hideYear) {
			add(days, 'day', 'd');
		} else {
			add(days / 365n, 'year', 'y');
			add(days % 365n, 'day', 'd');
		}

		add(Number(parsed.hours), 'hour', 'h');
	}

	add(Number(parsed.minutes), 'minute', 'm');

	if (!options.hideSeconds) {
		if (
			options.separateMilliseconds
			|| options.formatSubMilliseconds
			|| (!options.colonNotation && milliseconds < 1000 && !options.subSecondsAsDecimals)
		) {
			const seconds = Number(parsed.seconds);
			const milliseconds = Number(parsed.milliseconds);
			const microseconds = Number(parsed.microseconds);
			const nanoseconds = Number(parsed.nanoseconds);

			add(seconds, 'second', 's');

			if (options.formatSubMilliseconds) {
				add(milliseconds, 'millisecond', 'ms');
				add(microseconds, 'microsecond', 'µs');
				add(nanoseconds, 'nanosecond', 'ns');
			} else {
				const millisecondsAndBelow
					= milliseconds
					+ (microseconds / 1000)
					+ (nanoseconds / 1e6);

				const millisecondsDecimalDigits
					= typeof options.millisecondsDecimalDigits === 'number'
						? options.millisecondsDecimalDigits
						: 0;

				const roundedMilliseconds = millisecondsAndBelow >= 1
					? Math.round(millisecondsAndBelow)
					: Math.ceil(millisecondsAndBelow);
				const maximumMilliseconds = 1000 - (10 ** -millisecondsDecimalDigits);

				const millisecondsString = millisecondsDecimalDigits
					? Math.min(millisecondsAndBelow, maximumMilliseconds).toFixed(millisecondsDecimalDigits)
					: Math.min(roundedMilliseconds, maximumMilliseconds);

				add(
					Number.parseFloat(millisecondsString),
					'millisecond',
					'ms',
					millisecondsString,
				);
			}
		} else {
			const seconds = (
				(isBigInt ? Number(milliseconds % ONE_DAY_IN_MILLISECONDS) : milliseconds)
				/ 1000
			) % 60;
			const secondsDecimalDigits
				= typeof options.secondsDecimalDigits === 'number'
					? options.secondsDecimalDigits
					: 1;
			const secondsFixed = floorDecimals(seconds, secondsDecimalDigits);
			const secondsString = options.keepDecimalsOnWholeSeconds
				? secondsFixed
				: secondsFixed.replace(/\.0+$/, '');
			add(Number.parseFloat(secondsString), 'second', 's', secondsString);
		}
	}

	if (result.length === 0) {
		return sign + '0' + (options.verbose ? ' milliseconds' : 'ms');
	}

	const separator = options.colonNotation ? ':' : ' ';
	if (typeof options.unitCount === 'number') {
		result = result.slice(0, Math.max(options.unitCount, 1));
	}

	return sign + result.join(separator);
}

;// CONCATENATED MODULE: ./node_modules/execa/lib/verbose/error.js


// When `verbose` is `short|full|custom`, print each command's error when it fails
const logError = (result, verboseInfo) => {
	if (result.failed) {
		verboseLog({
			type: 'error',
			verboseMessage: result.shortMessage,
			verboseInfo,
			result,
		});
	}
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/verbose/complete.js





// When `verbose` is `short|full|custom`, print each command's completion, duration and error
const logResult = (result, verboseInfo) => {
	if (!isVerbose(verboseInfo)) {
		return;
	}

	logError(result, verboseInfo);
	logDuration(result, verboseInfo);
};

const logDuration = (result, verboseInfo) => {
	const verboseMessage = `(done in ${prettyMilliseconds(result.durationMs)})`;
	verboseLog({
		type: 'duration',
		verboseMessage,
		verboseInfo,
		result,
	});
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/return/reject.js


// Applies the `reject` option.
// Also print the final log line with `verbose`.
const handleResult = (result, verboseInfo, {reject}) => {
	logResult(result, verboseInfo);

	if (reject && result.failed) {
		throw result;
	}

	return result;
};

;// CONCATENATED MODULE: ./node_modules/execa/node_modules/is-stream/index.js
function is_stream_isStream(stream, {checkOpen = true} = {}) {
	return stream !== null
		&& typeof stream === 'object'
		&& (stream.writable || stream.readable || !checkOpen || (stream.writable === undefined && stream.readable === undefined))
		&& typeof stream.pipe === 'function';
}

function is_stream_isWritableStream(stream, {checkOpen = true} = {}) {
	return is_stream_isStream(stream, {checkOpen})
		&& (stream.writable || !checkOpen)
		&& typeof stream.write === 'function'
		&& typeof stream.end === 'function'
		&& typeof stream.writable === 'boolean'
		&& typeof stream.writableObjectMode === 'boolean'
		&& typeof stream.destroy === 'function'
		&& typeof stream.destroyed === 'boolean';
}

function is_stream_isReadableStream(stream, {checkOpen = true} = {}) {
	return is_stream_isStream(stream, {checkOpen})
		&& (stream.readable || !checkOpen)
		&& typeof stream.read === 'function'
		&& typeof stream.readable === 'boolean'
		&& typeof stream.readableObjectMode === 'boolean'
		&& typeof stream.destroy === 'function'
		&& typeof stream.destroyed === 'boolean';
}

function is_stream_isDuplexStream(stream, options) {
	return is_stream_isWritableStream(stream, options)
		&& is_stream_isReadableStream(stream, options);
}

function is_stream_isTransformStream(stream, options) {
	return is_stream_isDuplexStream(stream, options)
		&& typeof stream._transform === 'function';
}

;// CONCATENATED MODULE: ./node_modules/execa/lib/stdio/type.js





// The `stdin`/`stdout`/`stderr` option can be of many types. This detects it.
const getStdioItemType = (value, optionName) => {
	if (isAsyncGenerator(value)) {
		return 'asyncGenerator';
	}

	if (isSyncGenerator(value)) {
		return 'generator';
	}

	if (isUrl(value)) {
		return 'fileUrl';
	}

	if (isFilePathObject(value)) {
		return 'filePath';
	}

	if (isWebStream(value)) {
		return 'webStream';
	}

	if (is_stream_isStream(value, {checkOpen: false})) {
		return 'native';
	}

	if (isUint8Array(value)) {
		return 'uint8Array';
	}

	if (isAsyncIterableObject(value)) {
		return 'asyncIterable';
	}

	if (isIterableObject(value)) {
		return 'iterable';
	}

	if (type_isTransformStream(value)) {
		return getTransformStreamType({transform: value}, optionName);
	}

	return isTransformOptions(value) ? getTransformObjectType(value, optionName) : 'native';
};

const getTransformObjectType = (value, optionName) => {
	if (is_stream_isDuplexStream(value.transform, {checkOpen: false})) {
		return getDuplexType(value, optionName);
	}

	return type_isTransformStream(value.transform) ? getTransformStreamType(value, optionName) : getGeneratorObjectType(value, optionName);
};

const getDuplexType = (value, optionName) => {
	validateNonGeneratorType(value, optionName, 'Duplex stream');
	return 'duplex';
};

const getTransformStreamType = (value, optionName) => {
	validateNonGeneratorType(value, optionName, 'web TransformStream');
	return 'webTransform';
};

const validateNonGeneratorType = ({final, binary, objectMode}, optionName, typeName) => {
	checkUndefinedOption(final, `${optionName}.final`, typeName);
	checkUndefinedOption(binary, `${optionName}.binary`, typeName);
	checkBooleanOption(objectMode, `${optionName}.objectMode`);
};

const checkUndefinedOption = (value, optionName, typeName) => {
	if (value !== undefined) {
		throw new TypeError(`The \`${optionName}\` option can only be defined when using a generator, not a ${typeName}.`);
	}
};

const getGeneratorObjectType = ({transform, final, binary, objectMode}, optionName) => {
	if (transform !== undefined && !isGenerator(transform)) {
		throw new TypeError(`The \`${optionName}.transform\` option must be a generator, a Duplex stream or a web TransformStream.`);
	}

	if (is_stream_isDuplexStream(final, {checkOpen: false})) {
		throw new TypeError(`The \`${optionName}.final\` option must not be a Duplex stream.`);
	}

	if (type_isTransformStream(final)) {
		throw new TypeError(`The \`${optionName}.final\` option must not be a web TransformStream.`);
	}

	if (final !== undefined && !isGenerator(final)) {
		throw new TypeError(`The \`${optionName}.final\` option must be a generator.`);
	}

	checkBooleanOption(binary, `${optionName}.binary`);
	checkBooleanOption(objectMode, `${optionName}.objectMode`);

	return isAsyncGenerator(transform) || isAsyncGenerator(final) ? 'asyncGenerator' : 'generator';
};

const isGenerator = value => isAsyncGenerator(value) || isSyncGenerator(value);
const isAsyncGenerator = value => Object.prototype.toString.call(value) === '[object AsyncGeneratorFunction]';
const isSyncGenerator = value => Object.prototype.toString.call(value) === '[object GeneratorFunction]';
const isTransformOptions = value => isPlainObject(value)
	&& (value.transform !== undefined || value.final !== undefined);

const isUrl = value => Object.prototype.toString.call(value) === '[object URL]';
const isRegularUrl = value => isUrl(value) && value.protocol !== 'file:';

const isFilePathObject = value => isPlainObject(value)
	&& Object.keys(value).length > 0
	&& Object.keys(value).every(key => FILE_PATH_KEYS.has(key))
	&& isFilePathString(value.file);
const FILE_PATH_KEYS = new Set(['file', 'append']);
const isFilePathString = file => typeof file === 'string';

// The `{value, input}` object form marks an additional file descriptor's direction explicitly.
// This is needed for direction-ambiguous values (like `'pipe'`, `'inherit'`, a file or a transform) on fd3+, which otherwise default to output.
const isStdioValueObject = value => isPlainObject(value)
	&& Object.keys(value).length > 0
	&& Object.keys(value).every(key => STDIO_VALUE_KEYS.has(key))
	&& 'value' in value;
const STDIO_VALUE_KEYS = new Set(['value', 'input']);

const isUnknownStdioString = (type, value) => type === 'native'
	&& typeof value === 'string'
	&& !KNOWN_STDIO_STRINGS.has(value);
const KNOWN_STDIO_STRINGS = new Set(['ipc', 'ignore', 'inherit', 'overlapped', 'pipe']);

const type_isReadableStream = value => Object.prototype.toString.call(value) === '[object ReadableStream]';
const type_isWritableStream = value => Object.prototype.toString.call(value) === '[object WritableStream]';
const isWebStream = value => type_isReadableStream(value) || type_isWritableStream(value);
const type_isTransformStream = value => type_isReadableStream(value?.readable) && type_isWritableStream(value?.writable);

const isAsyncIterableObject = value => isObject(value) && typeof value[Symbol.asyncIterator] === 'function';
const isIterableObject = value => isObject(value) && typeof value[Symbol.iterator] === 'function';
const isObject = value => typeof value === 'object' && value !== null;

// Types which modify `subprocess.std*`
const TRANSFORM_TYPES = new Set(['generator', 'asyncGenerator', 'duplex', 'webTransform']);
// Types which write to a file or a file descriptor
const FILE_TYPES = new Set(['fileUrl', 'filePath', 'fileNumber']);
// When two file descriptors of this type share the same target, we need to do some special logic
const SPECIAL_DUPLICATE_TYPES_SYNC = new Set(['fileUrl', 'filePath']);
const SPECIAL_DUPLICATE_TYPES = new Set([...SPECIAL_DUPLICATE_TYPES_SYNC, 'webStream', 'nodeStream']);
// Do not allow two file descriptors of this type sharing the same target
const FORBID_DUPLICATE_TYPES = new Set(['webTransform', 'duplex']);

// Convert types to human-friendly strings for error messages
const TYPE_TO_MESSAGE = {
	generator: 'a generator',
	asyncGenerator: 'an async generator',
	fileUrl: 'a file URL',
	filePath: 'a file path string',
	fileNumber: 'a file descriptor number',
	webStream: 'a web stream',
	nodeStream: 'a Node.js stream',
	webTransform: 'a web TransformStream',
	duplex: 'a Duplex stream',
	native: 'any value',
	iterable: 'an iterable',
	asyncIterable: 'an async iterable',
	string: 'a string',
	uint8Array: 'a Uint8Array',
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/transform/object-mode.js


/*
Retrieve the `objectMode`s of a single transform.
`objectMode` determines the return value's type, i.e. the `readableObjectMode`.
The chunk argument's type is based on the previous generator's return value, i.e. the `writableObjectMode` is based on the previous `readableObjectMode`.
The last input's generator is read by `subprocess.stdin` which:
- should not be in `objectMode` for performance reasons.
- can only be strings, Buffers and Uint8Arrays.
Therefore its `readableObjectMode` must be `false`.
The same applies to the first output's generator's `writableObjectMode`.
*/
const getTransformObjectModes = (objectMode, index, newTransforms, direction) => direction === 'output'
	? getOutputObjectModes(objectMode, index, newTransforms)
	: getInputObjectModes(objectMode, index, newTransforms);

const getOutputObjectModes = (objectMode, index, newTransforms) => {
	const writableObjectMode = index !== 0 && newTransforms[index - 1].value.readableObjectMode;
	const readableObjectMode = objectMode ?? writableObjectMode;
	return {writableObjectMode, readableObjectMode};
};

const getInputObjectModes = (objectMode, index, newTransforms) => {
	const writableObjectMode = index === 0
		? objectMode === true
		: newTransforms[index - 1].value.readableObjectMode;
	const readableObjectMode = index !== newTransforms.length - 1 && (objectMode ?? writableObjectMode);
	return {writableObjectMode, readableObjectMode};
};

// Retrieve the `objectMode` of a file descriptor, e.g. `stdout` or `stderr`
const getFdObjectMode = (stdioItems, direction) => {
	const lastTransform = stdioItems.findLast(({type}) => TRANSFORM_TYPES.has(type));
	if (lastTransform === undefined) {
		return false;
	}

	return direction === 'input'
		? lastTransform.value.writableObjectMode
		: lastTransform.value.readableObjectMode;
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/transform/normalize.js





// Transforms generators/duplex/TransformStream can have multiple shapes.
// This normalizes it and applies default values.
const normalizeTransforms = (stdioItems, optionName, direction, options) => [
	...stdioItems.filter(({type}) => !TRANSFORM_TYPES.has(type)),
	...getTransforms(stdioItems, optionName, direction, options),
];

const getTransforms = (stdioItems, optionName, direction, {encoding}) => {
	const transforms = stdioItems.filter(({type}) => TRANSFORM_TYPES.has(type));
	const newTransforms = Array.from({length: transforms.length});

	for (const [index, stdioItem] of Object.entries(transforms)) {
		newTransforms[index] = normalizeTransform({
			stdioItem,
			index: Number(index),
			newTransforms,
			optionName,
			direction,
			encoding,
		});
	}

	return sortTransforms(newTransforms, direction);
};

const normalizeTransform = ({stdioItem, stdioItem: {type}, index, newTransforms, optionName, direction, encoding}) => {
	if (type === 'duplex') {
		return normalizeDuplex({stdioItem, optionName});
	}

	if (type === 'webTransform') {
		return normalizeTransformStream({
			stdioItem,
			index,
			newTransforms,
			direction,
		});
	}

	return normalizeGenerator({
		stdioItem,
		index,
		newTransforms,
		direction,
		encoding,
	});
};

const normalizeDuplex = ({stdioItem, optionName}) => {
	const {value} = stdioItem;
	const {transform} = value;
	const {writableObjectMode, readableObjectMode} = transform;
	const {objectMode = readableObjectMode} = value;

	if (objectMode && !readableObjectMode) {
		throw new TypeError(`The \`${optionName}.objectMode\` option can only be \`true\` if \`new Duplex({objectMode: true})\` is used.`);
	}

	if (!objectMode && readableObjectMode) {
		throw new TypeError(`The \`${optionName}.objectMode\` option cannot be \`false\` if \`new Duplex({objectMode: true})\` is used.`);
	}

	return {
		...stdioItem,
		value: {transform, writableObjectMode, readableObjectMode},
	};
};

const normalizeTransformStream = ({stdioItem, stdioItem: {value}, index, newTransforms, direction}) => {
	const {transform, objectMode} = isPlainObject(value) ? value : {transform: value};
	const {writableObjectMode, readableObjectMode} = getTransformObjectModes(objectMode, index, newTransforms, direction);
	return ({
		...stdioItem,
		value: {transform, writableObjectMode, readableObjectMode},
	});
};

const normalizeGenerator = ({stdioItem, stdioItem: {value}, index, newTransforms, direction, encoding}) => {
	const {
		transform,
		final,
		binary: binaryOption = false,
		preserveNewlines = false,
		objectMode,
	} = isPlainObject(value) ? value : {transform: value};
	const binary = binaryOption || BINARY_ENCODINGS.has(encoding);
	const {writableObjectMode, readableObjectMode} = getTransformObjectModes(objectMode, index, newTransforms, direction);
	return {
		...stdioItem,
		value: {
			transform,
			final,
			binary,
			preserveNewlines,
			writableObjectMode,
			readableObjectMode,
		},
	};
};

const sortTransforms = (newTransforms, direction) => direction === 'input' ? newTransforms.reverse() : newTransforms;

;// CONCATENATED MODULE: ./node_modules/execa/lib/stdio/direction.js




// For `stdio[fdNumber]` beyond stdin/stdout/stderr, we need to guess whether the value passed is intended for inputs or outputs.
// This allows us to know whether to pipe _into_ or _from_ the stream.
// When `stdio[fdNumber]` is a single value, this guess is fairly straightforward.
// However, when it is an array instead, we also need to make sure the different values are not incompatible with each other.
const getStreamDirection = ({stdioItems, isStdioArray, fdNumber, optionName}) => {
	const directions = stdioItems.map(stdioItem => getStdioItemDirection(stdioItem, fdNumber, isStdioArray));

	if (directions.includes('input') && directions.includes('output')) {
		throw new TypeError(`The \`${optionName}\` option must not be an array of both readable and writable values.`);
	}

	return directions.find(Boolean) ?? DEFAULT_DIRECTION;
};

const getStdioItemDirection = (stdioItem, fdNumber, isStdioArray) => {
	const knownDirection = KNOWN_DIRECTIONS[fdNumber];
	const direction = getRequestedDirection(stdioItem);
	if (knownDirection === undefined) {
		return direction;
	}

	validateKnownDirection(stdioItem, knownDirection, isStdioArray);
	return knownDirection;
};

// `direction` is set when the user explicitly requests it, e.g. `{value: 'pipe', input: true}`.
// It takes precedence over guessing, but not over the fixed direction of `stdin`/`stdout`/`stderr`.
// The explicitly requested `direction` must not contradict a value that is intrinsically the other direction.
// For example, `{value: writableStream, input: true}` is invalid since a writable value can only be an output.
const getRequestedDirection = ({type, value, direction, optionName}) => {
	const guessedDirection = guessStreamDirection[type](value);
	if (direction === 'input' && guessedDirection === 'output') {
		throw new TypeError(`The \`${optionName}\` option is invalid: \`input: true\` cannot be used with a writable value, which is always an output.`);
	}

	return direction ?? guessedDirection;
};

// `stdin`/`stdout`/`stderr` have a fixed direction, which each value must not contradict.
// Otherwise, asynchronous methods pipe in the wrong direction and crash, e.g. with `dest.end is not a function`.
// Only values whose direction is intrinsic to a stream are checked: other values (e.g. `Uint8Array`) are already
// rejected in the wrong direction when their stream properties are added.
// A single file descriptor 0, 1 or 2, e.g. `stdin: 1`, is passed as is to `child_process.spawn()` instead of being piped by Execa, so it is not checked. Those are often the same terminal, which is both readable and writable.
const validateKnownDirection = ({type, value, optionName}, knownDirection, isStdioArray) => {
	if (!STREAM_TYPES.has(type) || (!isStdioArray && getStandardStreamDirection(value) !== undefined)) {
		return;
	}

	const guessedDirection = guessStreamDirection[type](value);
	if (guessedDirection === undefined || guessedDirection === knownDirection) {
		return;
	}

	const valueName = guessedDirection === 'input' ? 'readable' : 'writable';
	throw new TypeError(`The \`${optionName}\` option is invalid: a ${valueName} value is always an ${guessedDirection}, but \`${optionName}\` is an ${knownDirection}.`);
};

const STREAM_TYPES = new Set(['native', 'nodeStream', 'webStream']);

// `stdin`/`stdout`/`stderr` have a known direction
const KNOWN_DIRECTIONS = ['input', 'output', 'output'];

const anyDirection = () => undefined;
const alwaysInput = () => 'input';

// `string` can only be added through the `input` option, i.e. on `stdin`, so it is always an input
const guessStreamDirection = {
	generator: anyDirection,
	asyncGenerator: anyDirection,
	fileUrl: anyDirection,
	filePath: anyDirection,
	iterable: alwaysInput,
	asyncIterable: alwaysInput,
	uint8Array: alwaysInput,
	string: alwaysInput,
	webStream: value => type_isWritableStream(value) ? 'output' : 'input',
	nodeStream(value) {
		if (!is_stream_isReadableStream(value, {checkOpen: false})) {
			return 'output';
		}

		return is_stream_isWritableStream(value, {checkOpen: false}) ? undefined : 'input';
	},
	webTransform: anyDirection,
	duplex: anyDirection,
	native(value) {
		const standardStreamDirection = getStandardStreamDirection(value);
		if (standardStreamDirection !== undefined) {
			return standardStreamDirection;
		}

		if (is_stream_isStream(value, {checkOpen: false})) {
			return guessStreamDirection.nodeStream(value);
		}
	},
};

const getStandardStreamDirection = value => {
	if ([0, external_node_process_namespaceObject.stdin].includes(value)) {
		return 'input';
	}

	if ([1, 2, external_node_process_namespaceObject.stdout, external_node_process_namespaceObject.stderr].includes(value)) {
		return 'output';
	}
};

// When ambiguous, we initially keep the direction as `undefined`.
// This allows arrays of `stdio` values to resolve the ambiguity.
// For example, `stdio[3]: DuplexStream` is ambiguous, but `stdio[3]: [DuplexStream, WritableStream]` is not.
// When the ambiguity remains, we default to `output` since it is the most common use case for additional file descriptors.
const DEFAULT_DIRECTION = 'output';

;// CONCATENATED MODULE: ./node_modules/execa/lib/ipc/array.js
// The `ipc` option adds an `ipc` item to the `stdio` option
const normalizeIpcStdioArray = (stdioArray, ipc) => ipc
	? [...stdioArray, 'ipc']
	: stdioArray;

;// CONCATENATED MODULE: ./node_modules/execa/lib/stdio/stdio-option.js






// Add support for `stdin`/`stdout`/`stderr` as an alias for `stdio`.
// Also normalize the `stdio` option.
// A rest pattern is not used to read the other options, since the object it creates inherits from `Object.prototype`, which a prototype pollution could then use to inject option values
const normalizeStdioOption = (options, verboseInfo, isSync) => {
	const {stdio, ipc, buffer} = options;
	const stdioArray = getStdioArray(stdio, options).map((stdioOption, fdNumber) => stdio_option_addDefaultValue(stdioOption, fdNumber));
	validateIpcStdioOption(stdioArray);
	return isSync
		? normalizeStdioSync(stdioArray, buffer, verboseInfo)
		: normalizeIpcStdioArray(stdioArray, ipc);
};

// The `stdio: 'ipc'` value (raw `child_process` syntax) was replaced by the `ipc: true` option
const validateIpcStdioOption = stdioArray => {
	if (stdioArray.some(stdioOption => hasIpcStdioOption(stdioOption))) {
		throw new Error('The `ipc: true` option must be used instead of `stdio: \'ipc\'`.');
	}
};

const hasIpcStdioOption = stdioOption => Array.isArray(stdioOption) ? stdioOption.some(item => hasIpcStdioItem(item)) : hasIpcStdioItem(stdioOption);

const hasIpcStdioItem = stdioOption => isStdioValueObject(stdioOption) ? stdioOption.value === 'ipc' : stdioOption === 'ipc';

const getStdioArray = (stdio, options) => {
	if (stdio === undefined) {
		return STANDARD_STREAMS_ALIASES.map(alias => options[alias]);
	}

	if (hasAlias(options)) {
		throw new Error(`It's not possible to provide \`stdio\` in combination with one of ${STANDARD_STREAMS_ALIASES.map(alias => `\`${alias}\``).join(', ')}`);
	}

	if (typeof stdio === 'string') {
		return [stdio, stdio, stdio];
	}

	if (!Array.isArray(stdio)) {
		throw new TypeError(`Expected \`stdio\` to be of type \`string\` or \`Array\`, got \`${getTypeName(stdio)}\``);
	}

	const length = Math.max(stdio.length, STANDARD_STREAMS_ALIASES.length);
	return Array.from({length}, (_, fdNumber) => stdio[fdNumber]);
};

const hasAlias = options => STANDARD_STREAMS_ALIASES.some(alias => options[alias] !== undefined);

const stdio_option_addDefaultValue = (stdioOption, fdNumber) => {
	if (Array.isArray(stdioOption)) {
		return stdioOption.map(item => stdio_option_addDefaultValue(item, fdNumber));
	}

	if (stdioOption === null || stdioOption === undefined) {
		return fdNumber >= STANDARD_STREAMS_ALIASES.length ? 'ignore' : 'pipe';
	}

	return stdioOption;
};

// Using `buffer: false` with synchronous methods implies `stdout`/`stderr`: `ignore`.
// Unless the output is needed, e.g. due to `verbose: 'full'` or to redirecting to a file.
// This is only done for `stdout`/`stderr`, since `ignore` redirects them to `/dev/null`.
// With additional file descriptors, it does not pass them to the subprocess at all, which would make it fail when writing to them.
const normalizeStdioSync = (stdioArray, buffer, verboseInfo) => stdioArray.map((stdioOption, fdNumber) =>
	!buffer[fdNumber]
	&& isStandardOutputFd(fdNumber)
	&& !isFullVerbose(verboseInfo, fdNumber)
	&& isOutputPipeOnly(stdioOption, fdNumber)
		? 'ignore'
		: stdioOption);

// An empty array is not output pipe only: it must keep being rejected as an empty array below
const isOutputPipeOnly = (stdioOption, fdNumber) => isOutputPipe(stdioOption, fdNumber)
	|| (Array.isArray(stdioOption) && stdioOption.length > 0 && stdioOption.every(item => isOutputPipe(item, fdNumber)));

const isOutputPipe = (stdioOption, fdNumber) => stdioOption === 'pipe'
	|| isOutputPipeObject(stdioOption, fdNumber);

const isOutputPipeObject = (stdioOption, fdNumber) => isStdioValueObject(stdioOption)
	&& stdioOption.value === 'pipe'
	&& (stdioOption.input === undefined || stdioOption.input === false || isFixedOutputPipe(fdNumber, stdioOption.input));

// On `stdout`/`stderr`, the direction is always output, so `input: true` is ignored and the pipe stays output.
const isFixedOutputPipe = (fdNumber, input) => input === true && isStandardOutputFd(fdNumber);

const isStandardOutputFd = fdNumber => fdNumber === 1 || fdNumber === 2;

;// CONCATENATED MODULE: ./node_modules/execa/lib/arguments/fd-options.js


// Retrieve stream targeted by the `to` option
const getToStream = (destination, to = 'stdin') => {
	const isWritable = true;
	const {options, fileDescriptors} = SUBPROCESS_OPTIONS.get(destination);
	const fdNumber = getFdNumber(fileDescriptors, to, isWritable);
	const destinationStream = destination.stdio[fdNumber];

	if (destinationStream === null) {
		throw new TypeError(getInvalidStdioOptionMessage(fdNumber, to, options, isWritable));
	}

	return destinationStream;
};

// Retrieve stream targeted by the `from` option
const getFromStream = (source, from = 'stdout') => {
	const isWritable = false;
	const {options, fileDescriptors} = SUBPROCESS_OPTIONS.get(source);
	const fdNumber = getFdNumber(fileDescriptors, from, isWritable);
	const sourceStream = fdNumber === 'all' ? source.all : source.stdio[fdNumber];

	if (sourceStream === null || sourceStream === undefined) {
		throw new TypeError(getInvalidStdioOptionMessage(fdNumber, from, options, isWritable));
	}

	return sourceStream;
};

// Keeps track of the options passed to each Execa call
const SUBPROCESS_OPTIONS = new WeakMap();

const getFdNumber = (fileDescriptors, fdName, isWritable) => {
	const fdNumber = parseFdNumber(fdName, isWritable);
	validateFdNumber(fdNumber, fdName, isWritable, fileDescriptors);
	return fdNumber;
};

const parseFdNumber = (fdName, isWritable) => {
	const fdNumber = parseFd(fdName);
	if (fdNumber !== undefined) {
		return fdNumber;
	}

	const {validOptions, defaultValue} = isWritable
		? {validOptions: '"stdin"', defaultValue: 'stdin'}
		: {validOptions: '"stdout", "stderr", "all"', defaultValue: 'stdout'};
	throw new TypeError(`"${getOptionName(isWritable)}" must not be "${fdName}".
It must be ${validOptions} or "fd3", "fd4" (and so on).
It is optional and defaults to "${defaultValue}".`);
};

const validateFdNumber = (fdNumber, fdName, isWritable, fileDescriptors) => {
	const fileDescriptor = fileDescriptors[getUsedDescriptor(fdNumber)];
	if (fileDescriptor === undefined) {
		throw new TypeError(`"${getOptionName(isWritable)}" must not be ${fdName}. That file descriptor does not exist.
Please set the "stdio" option to ensure that file descriptor exists.`);
	}

	if (!isWritable && fileDescriptor.direction === 'input') {
		throw new TypeError(`"${getOptionName(isWritable)}" must not be ${fdName}. It must be a readable stream, not writable.`);
	}

	if (isWritable && fileDescriptor.direction !== 'input') {
		throw new TypeError(`"${getOptionName(isWritable)}" must not be ${fdName}. It must be a writable stream, not readable.
If you meant to use it as input, please set its "stdio" option to \`{value: 'pipe', input: true}\`.`);
	}
};

const getInvalidStdioOptionMessage = (fdNumber, fdName, options, isWritable) => {
	if (fdNumber === 'all' && !options.all) {
		return 'The "all" option must be true to use "from: \'all\'".';
	}

	const {optionName, optionValue} = getInvalidStdioOption(fdNumber, options);
	return `The "${optionName}: ${serializeOptionValue(optionValue)}" option is incompatible with using "${getOptionName(isWritable)}: ${serializeOptionValue(fdName)}".
Please set this option with "pipe" instead.`;
};

const getInvalidStdioOption = (fdNumber, {stdin, stdout, stderr, stdio}) => {
	const usedDescriptor = getUsedDescriptor(fdNumber);

	if (usedDescriptor === 0 && stdin !== undefined) {
		return {optionName: 'stdin', optionValue: stdin};
	}

	if (usedDescriptor === 1 && stdout !== undefined) {
		return {optionName: 'stdout', optionValue: stdout};
	}

	return usedDescriptor === 2 && stderr !== undefined ? {optionName: 'stderr', optionValue: stderr} : {optionName: `stdio[${usedDescriptor}]`, optionValue: stdio[usedDescriptor]};
};

const getUsedDescriptor = fdNumber => fdNumber === 'all' ? 1 : fdNumber;

const getOptionName = isWritable => isWritable ? 'to' : 'from';

const serializeOptionValue = value => {
	if (typeof value === 'string') {
		return `'${value}'`;
	}

	return typeof value === 'number' ? `${value}` : 'Stream';
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/stdio/native.js







// When we use multiple `stdio` values for the same streams, we pass 'pipe' to `child_process.spawn()`.
// We then emulate the piping done by core Node.js.
// To do so, we transform the following values:
//  - Node.js streams are marked as `type: nodeStream`
//  - 'inherit' becomes `process.stdin|stdout|stderr`
//  - any file descriptor integer becomes `process.stdio[fdNumber]`
// All of the above transformations tell Execa to perform manual piping.
const handleNativeStream = ({stdioItem, stdioItem: {type}, isStdioArray, fdNumber, direction, isSync}) => {
	if (!isStdioArray || type !== 'native') {
		return stdioItem;
	}

	return isSync
		? handleNativeStreamSync({stdioItem, fdNumber, direction})
		: handleNativeStreamAsync({stdioItem, fdNumber});
};

// Synchronous methods use a different logic.
// 'inherit', file descriptors and process.std* are handled by readFileSync()/writeFileSync().
const handleNativeStreamSync = ({stdioItem, stdioItem: {value, optionName}, fdNumber, direction}) => {
	const targetFd = getTargetFd({
		value,
		optionName,
		fdNumber,
		direction,
	});
	if (targetFd !== undefined) {
		return targetFd;
	}

	if (is_stream_isStream(value, {checkOpen: false})) {
		throw new TypeError(`The \`${optionName}: Stream\` option cannot both be an array and include a stream with synchronous methods.`);
	}

	return stdioItem;
};

const getTargetFd = ({value, optionName, fdNumber, direction}) => {
	const targetFdNumber = getTargetFdNumber(value, fdNumber);
	if (targetFdNumber === undefined) {
		return;
	}

	if (direction === 'output') {
		return {type: 'fileNumber', value: targetFdNumber, optionName};
	}

	if (external_node_tty_namespaceObject.isatty(targetFdNumber)) {
		throw new TypeError(`The \`${optionName}: ${serializeOptionValue(value)}\` option is invalid: it cannot be a TTY with synchronous methods.`);
	}

	// The file descriptor is read lazily, like `inputFile`, so that a read failure is reported like any other early error, instead of being thrown as a raw error
	return {type: 'uint8Array', contents: () => [bufferToUint8Array((0,external_node_fs_namespaceObject.readFileSync)(targetFdNumber))], optionName};
};

const getTargetFdNumber = (value, fdNumber) => {
	if (value === 'inherit') {
		return fdNumber;
	}

	if (typeof value === 'number') {
		return value;
	}

	const standardStreamIndex = STANDARD_STREAMS.indexOf(value);
	if (standardStreamIndex !== -1) {
		return standardStreamIndex;
	}
};

const handleNativeStreamAsync = ({stdioItem, stdioItem: {value, optionName}, fdNumber}) => {
	if (value === 'inherit') {
		return {type: 'nodeStream', value: getStandardStream(fdNumber, value, optionName), optionName};
	}

	if (typeof value === 'number') {
		return {type: 'nodeStream', value: getStandardStream(value, value, optionName), optionName};
	}

	return is_stream_isStream(value, {checkOpen: false}) ? {type: 'nodeStream', value, optionName} : stdioItem;
};

// Node.js does not allow to easily retrieve file descriptors beyond stdin/stdout/stderr as streams.
//  - `fs.createReadStream()`/`fs.createWriteStream()` with the `fd` option do not work with character devices that use blocking reads/writes (such as interactive TTYs).
//  - Using a TCP `Socket` would work but be rather complex to implement.
// Since this is an edge case, we simply throw an error message.
// See https://github.com/sindresorhus/execa/pull/643#discussion_r1435905707
const getStandardStream = (fdNumber, value, optionName) => {
	const standardStream = STANDARD_STREAMS[fdNumber];

	if (standardStream === undefined) {
		throw new TypeError(`The \`${optionName}: ${value}\` option is invalid: no such standard stream.`);
	}

	return standardStream;
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/stdio/input-option.js




// Append the `stdin` option with the `input` and `inputFile` options
const handleInputOptions = ({input, inputFile}, fdNumber) => fdNumber === 0
	? [
		...handleInputOption(input),
		...handleInputFileOption(inputFile),
	]
	: [];

const handleInputOption = input => input === undefined
	? []
	: [{
		type: getInputType(input),
		value: input,
		optionName: 'input',
	}];

const getInputType = input => {
	if (is_stream_isReadableStream(input, {checkOpen: false})) {
		return 'nodeStream';
	}

	if (typeof input === 'string') {
		return 'string';
	}

	if (isUint8Array(input)) {
		return 'uint8Array';
	}

	throw new Error('The `input` option must be a string, a Uint8Array or a Node.js Readable stream.');
};

const handleInputFileOption = inputFile => inputFile === undefined
	? []
	: [{
		...getInputFileType(inputFile),
		optionName: 'inputFile',
	}];

const getInputFileType = inputFile => {
	if (isUrl(inputFile)) {
		return {type: 'fileUrl', value: inputFile};
	}

	if (isFilePathString(inputFile)) {
		return {type: 'filePath', value: {file: inputFile}};
	}

	throw new Error('The `inputFile` option must be a file path string or a file URL.');
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/stdio/duplicate.js




// `{file: './output.txt'}` and a `file:` URL are two ways to target the same file, so both must be compared together
const isFileType = type => SPECIAL_DUPLICATE_TYPES_SYNC.has(type);

// The file that a `filePath` or `fileUrl` stdio item targets, as an absolute path
const getFileTarget = ({type, value}) => type === 'filePath'
	? external_node_path_namespaceObject.resolve(value.file)
	: (0,external_node_url_namespaceObject.fileURLToPath)(value);

// Duplicates in the same file descriptor is most likely an error.
// However, this can be useful with generators.
const filterDuplicates = stdioItems => stdioItems.filter((stdioItemOne, indexOne) =>
	stdioItems.every((stdioItemTwo, indexTwo) => !hasSameValueAndDirection(stdioItemOne, stdioItemTwo)
		|| indexOne >= indexTwo
		|| stdioItemOne.type === 'generator'
		|| stdioItemOne.type === 'asyncGenerator'));

const hasSameValueAndDirection = (stdioItemOne, stdioItemTwo) => stdioItemOne.value === stdioItemTwo.value
	&& stdioItemOne.direction === stdioItemTwo.direction;

// Check if two file descriptors are sharing the same target.
// For example `{stdout: {file: './output.txt'}, stderr: {file: './output.txt'}}`.
// The same applies to two items of a single file descriptor, e.g. `{stdout: [{file: './output.txt'}, {file: './output.txt'}]}`.
const getDuplicateStream = ({stdioItem: {type, value, optionName}, direction, fileDescriptors, isSync}) => {
	const otherStdioItems = getOtherStdioItems(fileDescriptors, type);
	if (otherStdioItems.length === 0) {
		return;
	}

	if (isSync) {
		validateDuplicateStreamSync({
			otherStdioItems,
			type,
			value,
			optionName,
			direction,
		});
		return;
	}

	if (SPECIAL_DUPLICATE_TYPES.has(type)) {
		return getDuplicateStreamInstance({
			otherStdioItems,
			type,
			value,
			optionName,
			direction,
		});
	}

	if (FORBID_DUPLICATE_TYPES.has(type)) {
		validateDuplicateTransform({
			otherStdioItems,
			type,
			value,
			optionName,
		});
	}
};

// Values shared by multiple file descriptors, including the other items of the file descriptor currently being built
const getOtherStdioItems = (fileDescriptors, type) => fileDescriptors
	.flatMap(({direction, stdioItems}) => stdioItems
		.map(stdioItem => ({...stdioItem, direction})),
	)
	.filter(stdioItem => isSameDuplicateType(stdioItem.type, type));

// A `filePath` and a `fileUrl` are compared together, since they can target the same file
const isSameDuplicateType = (otherType, type) => otherType === type || (isFileType(otherType) && isFileType(type));

// With `execaSync()`, do not allow setting a file path both in input and output
const validateDuplicateStreamSync = ({otherStdioItems, type, value, optionName, direction}) => {
	if (SPECIAL_DUPLICATE_TYPES_SYNC.has(type)) {
		getDuplicateStreamInstance({
			otherStdioItems,
			type,
			value,
			optionName,
			direction,
		});
	}
};

// When two file descriptors share the file or stream, we need to re-use the same underlying stream.
// Otherwise, the stream would be closed twice when piping ends.
// This is only an issue with output file descriptors.
// This is not a problem with generator functions since those create a new instance for each file descriptor.
// We also forbid input and output file descriptors sharing the same file or stream, since that does not make sense.
const getDuplicateStreamInstance = ({otherStdioItems, type, value, optionName, direction}) => {
	const duplicateStdioItems = otherStdioItems.filter(stdioItem => hasSameValue(stdioItem, type, value));
	if (duplicateStdioItems.length === 0) {
		return;
	}

	const differentStdioItem = duplicateStdioItems.find(stdioItem => stdioItem.direction !== direction);
	throwOnDuplicateStream(differentStdioItem, optionName, type);

	// Output streams must be re-used so they are not closed twice.
	// Web streams must be re-used in the input direction too, since they cannot be converted twice: reading one locks it.
	return direction === 'output' || type === 'webStream' ? duplicateStdioItems[0].stream : undefined;
};

// `type` and `value` are the current item's, `otherStdioItem` is the other one
const hasSameValue = (otherStdioItem, type, value) => isFileType(otherStdioItem.type)
	? getFileTarget(otherStdioItem) === getFileTarget({type, value})
	: otherStdioItem.value === value;

// We do not allow two file descriptors to share the same Duplex or TransformStream.
// This is because those are set directly to `subprocess.std*`.
// For example, this could result in `subprocess.stdout` and `subprocess.stderr` being the same value.
// This means reading from either would get data from both stdout and stderr.
const validateDuplicateTransform = ({otherStdioItems, type, value, optionName}) => {
	const duplicateStdioItem = otherStdioItems.find(({value: {transform}}) => transform === value.transform);
	throwOnDuplicateStream(duplicateStdioItem, optionName, type);
};

const throwOnDuplicateStream = (stdioItem, optionName, type) => {
	if (stdioItem !== undefined) {
		throw new TypeError(`The \`${stdioItem.optionName}\` and \`${optionName}\` options must not target ${TYPE_TO_MESSAGE[type]} that is the same.`);
	}
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/stdio/handle.js












// Handle `input`, `inputFile`, `stdin`, `stdout` and `stderr` options, before spawning, in async/sync mode
// They are converted into an array of `fileDescriptors`.
// Each `fileDescriptor` is normalized, validated and contains all information necessary for further handling.
const handleStdio = (addProperties, options, verboseInfo, isSync) => {
	const stdio = normalizeStdioOption(options, verboseInfo, isSync);
	const initialFileDescriptors = stdio.map((stdioOption, fdNumber) => getFileDescriptor({
		stdioOption,
		fdNumber,
		options,
		isSync,
	}));
	const fileDescriptors = getFinalFileDescriptors({
		initialFileDescriptors,
		addProperties,
		options,
		isSync,
	});
	options.stdio = fileDescriptors.map(({stdioItems}) => forwardStdio(stdioItems));
	return fileDescriptors;
};

const getFileDescriptor = ({stdioOption, fdNumber, options, isSync}) => {
	const optionName = getStreamName(fdNumber);
	const {stdioItems: initialStdioItems, isStdioArray} = initializeStdioItems({
		stdioOption,
		fdNumber,
		options,
		optionName,
	});
	const direction = getStreamDirection({
		stdioItems: initialStdioItems,
		isStdioArray,
		fdNumber,
		optionName,
	});
	const stdioItems = initialStdioItems.map(stdioItem => handleNativeStream({
		stdioItem,
		isStdioArray,
		fdNumber,
		direction,
		isSync,
	}));
	const normalizedStdioItems = normalizeTransforms(stdioItems, optionName, direction, options);
	const objectMode = getFdObjectMode(normalizedStdioItems, direction);
	validateFileObjectMode(normalizedStdioItems, objectMode);
	return {direction, objectMode, stdioItems: normalizedStdioItems};
};

// We make sure passing an array with a single item behaves the same as passing that item without an array.
// This is what users would expect.
// For example, `stdout: ['ignore']` behaves the same as `stdout: 'ignore'`.
const initializeStdioItems = ({stdioOption, fdNumber, options, optionName}) => {
	const values = Array.isArray(stdioOption) ? stdioOption : [stdioOption];
	const inputStdioItems = handleInputOptions(options, fdNumber);
	const initialStdioItems = [
		...omitInheritedStdin(values.map(value => initializeStdioItem(value, optionName)), inputStdioItems),
		...inputStdioItems,
	];

	const stdioItems = filterDuplicates(initialStdioItems);
	const isStdioArray = stdioItems.length > 1;
	validateStdioArray(stdioItems, isStdioArray, optionName);
	validateStreams(stdioItems, isStdioArray);
	return {stdioItems, isStdioArray};
};

const omitInheritedStdin = (stdioItems, inputStdioItems) => inputStdioItems.length > 0 && isInheritedStdinOnly(stdioItems)
	? []
	: stdioItems;

const isInheritedStdinOnly = stdioItems => stdioItems.length === 1
	&& stdioItems[0].type === 'native'
	&& stdioItems[0].value === 'inherit';

const initializeStdioItem = (value, optionName) => {
	if (isStdioValueObject(value)) {
		return initializeStdioValueObject(value, optionName);
	}

	return {
		type: getStdioItemType(value, optionName),
		value,
		optionName,
	};
};

// The `{value, input}` object form wraps any stdio value with an explicit direction.
const initializeStdioValueObject = ({value, input}, optionName) => {
	checkBooleanOption(input, `${optionName}.input`);

	return {
		type: getStdioItemType(value, optionName),
		value,
		direction: input ? 'input' : undefined,
		optionName,
	};
};

const validateStdioArray = (stdioItems, isStdioArray, optionName) => {
	if (stdioItems.length === 0) {
		throw new TypeError(`The \`${optionName}\` option must not be an empty array.`);
	}

	if (!isStdioArray) {
		return;
	}

	for (const {value, optionName} of stdioItems) {
		if (INVALID_STDIO_ARRAY_OPTIONS.has(value)) {
			throw new Error(`The \`${optionName}\` option must not include \`${value}\`.`);
		}
	}
};

// Using the `ignore` value together with others for the same stream does not make sense, so we make it fail.
// However, we do allow it if the array has a single item.
const INVALID_STDIO_ARRAY_OPTIONS = new Set(['ignore']);

const validateStreams = (stdioItems, isStdioArray) => {
	for (const stdioItem of stdioItems) {
		validateFileStdio(stdioItem);
		validateFileDescriptorStdio(stdioItem);
		validateNativeStdio(stdioItem, isStdioArray);
	}
};

// File descriptors can be passed as numbers or native objects with an `fd` property. Invalid descriptors can make `node:child_process` abort the current process with a fatal assertion instead of throwing.
const validateFileDescriptorStdio = ({type, value, optionName}) => {
	if (type !== 'native') {
		return;
	}

	const fileDescriptor = typeof value === 'number' ? value : value?.fd;
	if (typeof fileDescriptor === 'number' && (!Number.isInteger(fileDescriptor) || fileDescriptor < 0 || fileDescriptor > MAX_FILE_DESCRIPTOR)) {
		throw new TypeError(`The \`${optionName}\` option must be a non-negative 32-bit integer: got ${fileDescriptor}.`);
	}
};

// `node:child_process` converts file descriptors to a 32-bit signed integer, and aborts the process when it cannot
const MAX_FILE_DESCRIPTOR = (2 ** 31) - 1;

// When passed alone, any unknown value fails when calling `node:child_process`.
// However, when an array is used, Execa only forwards `pipe` to `node:child_process`, so unknown values would be silently ignored.
// Valid values are the ones `node:child_process` accepts: known strings, file descriptor integers, Node.js streams and file handles.
// File handles are the exception: they are valid alone, but Execa's array emulation cannot handle them, so they would be silently ignored.
const validateNativeStdio = ({type, value, optionName}, isStdioArray) => {
	if (type !== 'native') {
		return;
	}

	if (isFileHandle(value)) {
		if (isStdioArray) {
			throw new TypeError(`The \`${optionName}\` option cannot combine file handles with other values.`);
		}

		return;
	}

	if (typeof value !== 'string' && typeof value !== 'number' && !is_stream_isStream(value, {checkOpen: false})) {
		throw new TypeError(`The \`${optionName}\` option is invalid: ${String(value)} (${typeof value}).`);
	}
};

const isFileHandle = value => typeof value?.fd === 'number' && !is_stream_isStream(value, {checkOpen: false});

const validateFileStdio = ({type, value, optionName}) => {
	if (isRegularUrl(value)) {
		throw new TypeError(`The \`${optionName}: URL\` option must use the \`file:\` scheme.
For example, you can use the \`pathToFileURL()\` method of the \`url\` core module.`);
	}

	if (isUnknownStdioString(type, value)) {
		throw new TypeError(`The \`${optionName}: { file: '...' }\` option must be used instead of \`${optionName}: '...'\`.`);
	}
};

const validateFileObjectMode = (stdioItems, objectMode) => {
	if (!objectMode) {
		return;
	}

	const fileStdioItem = stdioItems.find(({type}) => FILE_TYPES.has(type));
	if (fileStdioItem !== undefined) {
		throw new TypeError(`The \`${fileStdioItem.optionName}\` option cannot use both files and transforms in objectMode.`);
	}
};

// Some `stdio` values require Execa to create streams.
// For example, file paths create file read/write streams.
// Those transformations are specified in `addProperties`, which is both direction-specific and type-specific.
const getFinalFileDescriptors = ({initialFileDescriptors, addProperties, options, isSync}) => {
	const fileDescriptors = [];

	try {
		for (const fileDescriptor of initialFileDescriptors) {
			addFinalFileDescriptor({
				fileDescriptor,
				fileDescriptors,
				addProperties,
				options,
				isSync,
			});
		}

		return fileDescriptors;
	} catch (error) {
		cleanupCustomStreams(fileDescriptors);
		throw error;
	}
};

/*
The file descriptor is added to `fileDescriptors` before its items are, for two reasons:
  - its items are added one at a time, so that each one knows about the previous ones, to detect duplicates within the same file descriptor
  - if an item throws, the streams created by the previous ones are cleaned up too
*/
const addFinalFileDescriptor = ({fileDescriptor, fileDescriptors, addProperties, options, isSync}) => {
	const {direction, objectMode, stdioItems} = fileDescriptor;
	const finalFileDescriptor = {direction, objectMode, stdioItems: []};
	fileDescriptors.push(finalFileDescriptor);

	for (const stdioItem of stdioItems) {
		finalFileDescriptor.stdioItems.push(addStreamProperties({
			stdioItem,
			addProperties,
			direction,
			objectMode,
			options,
			fileDescriptors,
			isSync,
		}));
	}
};

const addStreamProperties = ({stdioItem, addProperties, direction, objectMode, options, fileDescriptors, isSync}) => {
	const duplicateStream = getDuplicateStream({
		stdioItem,
		direction,
		fileDescriptors,
		isSync,
	});

	if (duplicateStream !== undefined) {
		return {...stdioItem, stream: duplicateStream};
	}

	return {
		...stdioItem,
		...addProperties[direction][stdioItem.type](stdioItem, options, objectMode),
	};
};

// The stream error handling is performed by the piping logic above, which cannot be performed before subprocess spawning.
// If the subprocess spawning fails (e.g. due to an invalid command), the streams need to be manually destroyed.
// We need to create those streams before subprocess spawning, in case their creation fails, e.g. when passing an invalid generator as argument.
// Like this, an exception would be thrown, which would prevent spawning a subprocess.
const cleanupCustomStreams = fileDescriptors => {
	for (const {stream} of fileDescriptors.flatMap(({stdioItems}) => stdioItems)) {
		if (stream === undefined || isStandardStream(stream)) {
			continue;
		}

		// The stream can still error after being destroyed, e.g. when its file cannot be opened.
		// That error would be uncaught and crash the current process, although it is irrelevant since execa already fails with its own error.
		stream.on('error', () => {});
		stream.destroy();
	}
};

// When the `std*: Iterable | WebStream | URL | filePath`, `input` or `inputFile` option is used, we pipe to `subprocess.std*`.
// When the `std*: Array` option is used, we emulate some of the native values ('inherit', Node.js stream and file descriptor integer). To do so, we also need to pipe to `subprocess.std*`.
// Therefore the `std*` options must be either `pipe` or `overlapped`. Other values do not set `subprocess.std*`.
const forwardStdio = stdioItems => {
	if (stdioItems.length > 1) {
		return stdioItems.some(({value}) => value === 'overlapped') ? 'overlapped' : 'pipe';
	}

	const [{type, value}] = stdioItems;
	return type === 'native' ? value : 'pipe';
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/stdio/handle-sync.js





// Normalize `input`, `inputFile`, `stdin`, `stdout` and `stderr` options, before spawning, in sync mode
const handleStdioSync = (options, verboseInfo) => handleStdio(addPropertiesSync, options, verboseInfo, true);

const forbiddenIfSync = ({type, optionName}) => {
	throwInvalidSyncValue(optionName, TYPE_TO_MESSAGE[type]);
};

const forbiddenNativeIfSync = ({optionName, value}) => {
	if (value === 'overlapped') {
		throwInvalidSyncValue(optionName, `"${value}"`);
	}

	return {};
};

// A native input pipe on an additional file descriptor cannot be fed in sync mode, since there is no way to write to it after spawning, so it would hang.
const forbiddenNativeInputIfSync = stdioItem => {
	const {optionName, value} = stdioItem;
	if (value === 'pipe' && optionName !== 'stdin') {
		throw new TypeError(`Only the \`stdin\` option, not \`${optionName}\`, can be an input pipe with synchronous methods.`);
	}

	return forbiddenNativeIfSync(stdioItem);
};

// For the same reason, an input transform can only be used with `stdin`, which is fed with the `input` option
const forbiddenInputTransformIfSync = ({optionName}) => {
	if (optionName !== 'stdin') {
		throw new TypeError(`Only the \`stdin\` option, not \`${optionName}\`, can be an input transform with synchronous methods.`);
	}
};

const throwInvalidSyncValue = (optionName, value) => {
	throw new TypeError(`The \`${optionName}\` option cannot be ${value} with synchronous methods.`);
};

// Create streams used internally for redirecting when using specific values for the `std*` options, in sync mode.
// For example, `stdin: {file}` reads the file synchronously, then passes it as the `input` option.
const addProperties = {
	generator() {},
	asyncGenerator: forbiddenIfSync,
	webStream: forbiddenIfSync,
	nodeStream: forbiddenIfSync,
	webTransform: forbiddenIfSync,
	duplex: forbiddenIfSync,
	asyncIterable: forbiddenIfSync,
	native: forbiddenNativeIfSync,
};

const addPropertiesSync = {
	input: {
		...addProperties,
		generator: forbiddenInputTransformIfSync,
		native: forbiddenNativeInputIfSync,
		// Files and iterables are read lazily, so that a file which cannot be read, or an iterable which throws, is reported like any other early error, instead of being thrown as a raw error
		fileUrl: ({value}) => ({contents: () => [bufferToUint8Array((0,external_node_fs_namespaceObject.readFileSync)(value))]}),
		filePath: ({value: {file}}) => ({contents: () => [bufferToUint8Array((0,external_node_fs_namespaceObject.readFileSync)(file))]}),
		fileNumber: forbiddenIfSync,
		iterable: ({value}) => ({contents: () => [...value]}),
		string: ({value}) => ({contents: [value]}),
		// `contents` is already set when reading from a file descriptor
		uint8Array: ({value, contents = [value]}) => ({contents}),
	},
	output: {
		...addProperties,
		fileUrl: ({value}) => ({path: value}),
		filePath: ({value: {file, append}}) => ({path: file, append}),
		fileNumber: ({value}) => ({path: value}),
		iterable: forbiddenIfSync,
		string: forbiddenIfSync,
		uint8Array: forbiddenIfSync,
	},
};

;// CONCATENATED MODULE: external "node:stream"
const external_node_stream_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:stream");
;// CONCATENATED MODULE: ./node_modules/execa/lib/transform/validate.js



// Validate the type of chunk argument passed to transform generators
const getValidateTransformInput = (writableObjectMode, optionName) => writableObjectMode
	? undefined
	: validateStringTransformInput.bind(undefined, optionName);

const validateStringTransformInput = function * (optionName, chunk) {
	if (typeof chunk !== 'string' && !isUint8Array(chunk) && !external_node_buffer_namespaceObject.Buffer.isBuffer(chunk)) {
		throw new TypeError(`The \`${optionName}\` option's transform must use "objectMode: true" to receive as input: ${typeof chunk}.`);
	}

	yield chunk;
};

// Validate the type of the value returned by transform generators
const getValidateTransformReturn = (readableObjectMode, optionName) => readableObjectMode
	? validateObjectTransformReturn.bind(undefined, optionName)
	: validateStringTransformReturn.bind(undefined, optionName);

const validateObjectTransformReturn = function * (optionName, chunk) {
	validateEmptyReturn(optionName, chunk);
	yield chunk;
};

const validateStringTransformReturn = function * (optionName, chunk) {
	validateEmptyReturn(optionName, chunk);

	if (typeof chunk !== 'string' && !isUint8Array(chunk)) {
		throw new TypeError(`The \`${optionName}\` option's function must yield a string or an Uint8Array, not ${typeof chunk}.`);
	}

	yield chunk;
};

const validateEmptyReturn = (optionName, chunk) => {
	if (chunk === null || chunk === undefined) {
		throw new TypeError(`The \`${optionName}\` option's function must not call \`yield ${chunk}\`.
Instead, \`yield\` should either be called with a value, or not be called at all. For example:
  if (condition) { yield value; }`);
	}
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/transform/encoding-transform.js





/*
When using binary encodings, add an internal generator that converts chunks from `Buffer` to `string` or `Uint8Array`.
Chunks might be Buffer, Uint8Array or strings since:
- `subprocess.stdout|stderr` emits Buffers
- `subprocess.stdin.write()` accepts Buffer, Uint8Array or string
- Previous generators might return Uint8Array or string

However, those are converted to Buffer:
- on writes: `Duplex.writable` `decodeStrings: true` default option
- on reads: `Duplex.readable` `readableEncoding: null` default option
*/
const getEncodingTransformGenerator = (binary, encoding, skipped) => {
	if (skipped) {
		return;
	}

	if (binary) {
		return {transform: encodingUint8ArrayGenerator.bind(undefined, new TextEncoder())};
	}

	const stringDecoder = new external_node_string_decoder_namespaceObject.StringDecoder(encoding);
	return {
		transform: encodingStringGenerator.bind(undefined, stringDecoder),
		final: encodingStringFinal.bind(undefined, stringDecoder),
	};
};

const encodingUint8ArrayGenerator = function * (textEncoder, chunk) {
	if (external_node_buffer_namespaceObject.Buffer.isBuffer(chunk)) {
		yield bufferToUint8Array(chunk);
	} else if (typeof chunk === 'string') {
		yield textEncoder.encode(chunk);
	} else {
		yield chunk;
	}
};

const encodingStringGenerator = function * (stringDecoder, chunk) {
	yield isUint8Array(chunk) ? stringDecoder.write(chunk) : chunk;
};

const encodingStringFinal = function * (stringDecoder) {
	const lastChunk = stringDecoder.end();
	if (lastChunk !== '') {
		yield lastChunk;
	}
};

/*
Once the user's transform has run, its string chunks are converted to bytes: by `Transform.push()` with the asynchronous methods, and by `joinToString()` with the synchronous ones. Both use UTF-8, yet the result is then decoded with the `encoding` option, which would corrupt the text when that option is a different text encoding.
Therefore, those chunks are converted using the `encoding` option beforehand.
With the `binary` transform option, they are converted with UTF-8 even when the `encoding` option is another text encoding. Otherwise, with synchronous methods, the next transform would receive the string itself, while with asynchronous methods it receives those UTF-8 bytes decoded with the `encoding` option.
When the `encoding` option is UTF-8, strings round-trip unchanged, so there is nothing to do.
*/
const getStringToBytesGenerator = (binary, encoding, skipped) => skipped || encoding === 'utf8'
	? undefined
	: {transform: stringToBytesGenerator.bind(undefined, getStringEncoding(binary, encoding))};

const stringToBytesGenerator = function * (stringEncoding, chunk) {
	yield typeof chunk === 'string' ? bufferToUint8Array(external_node_buffer_namespaceObject.Buffer.from(chunk, stringEncoding)) : chunk;
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/transform/run-async.js


// Applies a series of generator functions asynchronously
const pushChunks = (0,external_node_util_namespaceObject.callbackify)(async (getChunks, state, getChunksArguments, transformStream) => {
	state.currentIterable = getChunks(...getChunksArguments);

	try {
		for await (const chunk of state.currentIterable) {
			transformStream.push(chunk);
		}
	} finally {
		delete state.currentIterable;
	}
});

// For each new chunk, apply each `transform()` method
const transformChunk = async function * (chunk, generators, index) {
	if (index === generators.length) {
		yield chunk;
		return;
	}

	const {transform = identityGenerator} = generators[index];
	for await (const transformedChunk of transform(chunk)) {
		yield * transformChunk(transformedChunk, generators, index + 1);
	}
};

// At the end, apply each `final()` method, followed by the `transform()` method of the next transforms
const finalChunks = async function * (generators) {
	for (const [index, {final}] of Object.entries(generators)) {
		yield * generatorFinalChunks(final, Number(index), generators);
	}
};

const generatorFinalChunks = async function * (final, index, generators) {
	if (final === undefined) {
		return;
	}

	for await (const finalChunk of final()) {
		yield * transformChunk(finalChunk, generators, index + 1);
	}
};

// Cancel any ongoing async generator when the Transform is destroyed, e.g. when the subprocess errors
const destroyTransform = (0,external_node_util_namespaceObject.callbackify)(async ({currentIterable}, error) => {
	if (currentIterable !== undefined) {
		await (error ? currentIterable.throw(error) : currentIterable.return());
		return;
	}

	if (error) {
		throw error;
	}
});

const identityGenerator = function * (chunk) {
	yield chunk;
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/transform/run-sync.js
// Duplicate the code from `run-async.js` but as synchronous functions
const pushChunksSync = (getChunksSync, getChunksArguments, transformStream, done) => {
	try {
		for (const chunk of getChunksSync(...getChunksArguments)) {
			transformStream.push(chunk);
		}

		done();
	} catch (error) {
		done(normalizeTransformError(error));
	}
};

// Match `util.callbackify()` so falsy exceptions cannot be mistaken for callback success or missing errors.
const normalizeTransformError = error => error || Object.assign(new Error('Promise was rejected with falsy value'), {
	code: 'ERR_FALSY_VALUE_REJECTION',
	reason: error,
});

// Run synchronous generators with `execaSync()`
const runTransformSync = (generators, chunks) => {
	try {
		return [
			...chunks.flatMap(chunk => [...transformChunkSync(chunk, generators, 0)]),
			...finalChunksSync(generators),
		];
	} catch (error) {
		throw normalizeTransformError(error);
	}
};

const transformChunkSync = function * (chunk, generators, index) {
	if (index === generators.length) {
		yield chunk;
		return;
	}

	const {transform = run_sync_identityGenerator} = generators[index];
	for (const transformedChunk of transform(chunk)) {
		yield * transformChunkSync(transformedChunk, generators, index + 1);
	}
};

const finalChunksSync = function * (generators) {
	for (const [index, {final}] of Object.entries(generators)) {
		yield * generatorFinalChunksSync(final, Number(index), generators);
	}
};

const generatorFinalChunksSync = function * (final, index, generators) {
	if (final === undefined) {
		return;
	}

	for (const finalChunk of final()) {
		yield * transformChunkSync(finalChunk, generators, index + 1);
	}
};

const run_sync_identityGenerator = function * (chunk) {
	yield chunk;
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/transform/generator.js










/*
Generators can be used to transform/filter standard streams.

Generators have a simple syntax, yet allows all of the following:
- Sharing `state` between chunks
- Flushing logic, by using a `final` function
- Asynchronous logic
- Emitting multiple chunks from a single source chunk, even if spaced in time, by using multiple `yield`
- Filtering, by using no `yield`

Therefore, there is no need to allow Node.js or web transform streams.

The `highWaterMark` is kept as the default value, since this is what `subprocess.std*` uses.

Chunks are currently processed serially. We could add a `concurrency` option to parallelize in the future.

Transform an array of generator functions into a `Transform` stream.
`Duplex.from(generator)` cannot be used because it does not allow setting the `objectMode` and `highWaterMark`.
*/
const generatorToStream = ({
	value,
	value: {
		transform,
		final,
		binary,
		writableObjectMode,
		readableObjectMode,
	},
	optionName,
}, {encoding}) => {
	const state = {};
	const generators = addInternalGenerators(value, encoding, optionName);

	const transformAsync = isAsyncGenerator(transform);
	const finalAsync = isAsyncGenerator(final);
	const transformMethod = transformAsync
		? pushChunks.bind(undefined, transformChunk, state)
		: pushChunksSync.bind(undefined, transformChunkSync);
	const finalMethod = transformAsync || finalAsync
		? pushChunks.bind(undefined, finalChunks, state)
		: pushChunksSync.bind(undefined, finalChunksSync);
	const destroyMethod = transformAsync || finalAsync
		? destroyTransform.bind(undefined, state)
		: undefined;

	const stream = new external_node_stream_namespaceObject.Transform({
		writableObjectMode,
		writableHighWaterMark: (0,external_node_stream_namespaceObject.getDefaultHighWaterMark)(writableObjectMode),
		readableObjectMode,
		readableHighWaterMark: (0,external_node_stream_namespaceObject.getDefaultHighWaterMark)(readableObjectMode),
		// A string written to the stream is converted to bytes with this encoding, which `getEncodingTransformGenerator()` then decodes with the `encoding` option
		defaultEncoding: getStringEncoding(binary, encoding),
		transform(chunk, encoding, done) {
			transformMethod([chunk, generators, 0], this, done);
		},
		flush(done) {
			finalMethod([generators], this, done);
		},
		destroy: destroyMethod,
	});
	return {stream};
};

// Applies transform generators in sync mode
const runGeneratorsSync = (chunks, stdioItems, encoding, isInput) => {
	const generators = stdioItems.filter(({type}) => type === 'generator');
	const reversedGenerators = isInput ? generators.reverse() : generators;

	for (const {value, optionName} of reversedGenerators) {
		// Byte-mode transforms encode strings before decoding them, like Transform's `decodeStrings` option.
		if (!value.writableObjectMode) {
			const stringEncoding = getStringEncoding(value.binary, encoding);
			chunks = chunks.map(chunk => typeof chunk === 'string' ? external_node_buffer_namespaceObject.Buffer.from(chunk, stringEncoding) : chunk);
		}

		const generators = addInternalGenerators(value, encoding, optionName);
		chunks = runTransformSync(generators, chunks);
	}

	return chunks;
};

// Generators used internally to convert the chunk type, validate it, and split into lines
const addInternalGenerators = (
	{transform, final, binary, writableObjectMode, readableObjectMode, preserveNewlines},
	encoding,
	optionName,
) => {
	const state = {};
	return [
		{transform: getValidateTransformInput(writableObjectMode, optionName)},
		getEncodingTransformGenerator(binary, encoding, writableObjectMode),
		getSplitLinesGenerator(binary, preserveNewlines, writableObjectMode, state),
		{transform, final},
		{transform: getValidateTransformReturn(readableObjectMode, optionName)},
		getAppendNewlineGenerator({
			binary,
			preserveNewlines,
			readableObjectMode,
			state,
			encoding,
		}),
		getStringToBytesGenerator(binary, encoding, readableObjectMode),
	].filter(Boolean);
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/io/input-sync.js





// Apply `stdin`/`input`/`inputFile` options, before spawning, in sync mode, by converting it to the `input` option
const addInputOptionsSync = (fileDescriptors, options) => {
	for (const fdNumber of getInputFdNumbers(fileDescriptors)) {
		addInputOptionSync(fileDescriptors, fdNumber, options);
	}
};

const getInputFdNumbers = fileDescriptors => new Set(Object.entries(fileDescriptors)
	.filter(([, {direction}]) => direction === 'input')
	.map(([fdNumber]) => Number(fdNumber)));

const addInputOptionSync = (fileDescriptors, fdNumber, options) => {
	const {stdioItems} = fileDescriptors[fdNumber];
	const allStdioItems = stdioItems.filter(({contents}) => contents !== undefined);
	// Even without an input source, generators must run so that `final` can produce input or report errors.
	if (allStdioItems.length === 0 && stdioItems.every(({type}) => type !== 'generator')) {
		return;
	}

	if (fdNumber !== 0) {
		const [{type, optionName}] = allStdioItems;
		throw new TypeError(`Only the \`stdin\` option, not \`${optionName}\`, can be ${TYPE_TO_MESSAGE[type]} with synchronous methods.`);
	}

	// All input sources are merged into a single list of chunks, like asynchronous methods merge input streams, so that transforms receive a single stream of data: line splitting spans all sources and `final` runs only once.
	// Files and iterables are read lazily, so that a read failure is reported like any other early error
	const chunks = allStdioItems.flatMap(({type, contents}) => getChunks(type, typeof contents === 'function' ? contents() : contents));
	options.input = applyInputGeneratorsSync(chunks, stdioItems, options.encoding);
};

// Like with asynchronous methods, an empty input is not passed as a chunk, otherwise binary transforms, which do not split lines, would run on it.
// Iterables are left as is, since each of their items is a chunk.
const getChunks = (type, chunks) => type === 'iterable' ? chunks : chunks.filter(chunk => chunk.length > 0);

const applyInputGeneratorsSync = (chunks, stdioItems, encoding) => {
	// Input transforms use UTF-8 with text encodings, since those only apply to the output
	const newContents = runGeneratorsSync(chunks, stdioItems, getInputEncoding(encoding), true);
	validateSerializable(newContents);
	return joinToUint8Array(newContents);
};

const validateSerializable = newContents => {
	const invalidItem = newContents.find(item => !isSerializableInput(item));
	if (invalidItem !== undefined) {
		throwOnSerializableInput('stdin', invalidItem);
	}
};

// Values written to the subprocess, which is not in object mode
const isSerializableInput = item => typeof item === 'string' || isUint8Array(item);

const throwOnSerializableInput = (optionName, invalidItem) => {
	throw new TypeError(`The \`${optionName}\` option is invalid: when passing objects as input, a transform must be used to serialize them to strings or Uint8Arrays: ${invalidItem}.`);
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/verbose/output.js






// `ignore` opts-out of `verbose` for a specific stream.
// `ipc` cannot use piping.
// `inherit` would result in double printing.
// They can also lead to double printing when passing file descriptor integers or `process.std*`.
// This only leaves with `pipe` and `overlapped`.
const shouldLogOutput = ({stdioItems, encoding, verboseInfo, fdNumber}) => fdNumber !== 'all'
	&& isFullVerbose(verboseInfo, fdNumber)
	&& !BINARY_ENCODINGS.has(encoding)
	&& isFdVerbose(fdNumber)
	&& (stdioItems.some(({type, value}) => type === 'native' && PIPED_STDIO_VALUES.has(value))
		|| stdioItems.every(({type}) => TRANSFORM_TYPES.has(type)));

// Printing input streams would be confusing.
// Files and streams can produce big outputs, which we don't want to print.
// We could print `stdio[3+]` but it often is redirected to files and streams, with the same issue.
// So we only print stdout and stderr.
const isFdVerbose = fdNumber => fdNumber === 1 || fdNumber === 2;

const PIPED_STDIO_VALUES = new Set(['pipe', 'overlapped']);

// `verbose: 'full'` printing logic with async methods
const logLines = async (linesIterable, stream, fdNumber, verboseInfo) => {
	for await (const line of linesIterable) {
		if (!isPipingStream(stream)) {
			logLine(line, fdNumber, verboseInfo);
		}
	}
};

// `verbose: 'full'` printing logic with sync methods
const logLinesSync = (linesArray, fdNumber, verboseInfo) => {
	for (const line of linesArray) {
		logLine(line, fdNumber, verboseInfo);
	}
};

// When `subprocess.stdout|stderr.pipe()` is called, `verbose` becomes a noop.
// This prevents the following problems:
//  - `.pipe()` achieves the same result as using `stdout: 'inherit'`, `stdout: stream`, etc. which also make `verbose` a noop.
//    For example, `subprocess.stdout.pipe(process.stdin)` would print each line twice.
//  - When chaining subprocesses with `subprocess.pipe(otherSubprocess)`, only the last one should print its output.
// Detecting whether `.pipe()` is impossible without monkey-patching it, so we use the following undocumented property.
// The pipe into `subprocess.all` is done by Execa itself, so it only counts when `subprocess.all` is itself piped, e.g. `subprocess.all.pipe(process.stdout)`.
// This is not a critical behavior since changes of the following property would only make `verbose` more verbose.
const isPipingStream = stream => stream._readableState.pipes.some(pipe => !isAllStream(pipe) || isPipingStream(pipe));

// When `verbose` is `full`, print stdout|stderr
const logLine = (line, fdNumber, verboseInfo) => {
	const verboseMessage = serializeVerboseMessage(line);
	verboseLog({
		type: 'output',
		verboseMessage,
		fdNumber,
		verboseInfo,
	});
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/io/output-sync.js









// Apply `stdout`/`stderr` options, after spawning, in sync mode
const transformOutputSync = ({fileDescriptors, syncResult, options, verboseInfo}) => {
	const output = syncResult.output ?? getSpawnFailureOutput(options);
	const outputFiles = new Set();
	// Transforms, `verbose` and file writes apply to a single file descriptor each, so their errors must not affect the other ones
	const errors = [];
	const transformedOutput = output.map((result, fdNumber) =>
		transformOutputResultSync({
			result,
			fileDescriptors,
			fdNumber,
			errors,
			outputFiles,
			verboseInfo,
		}, options));
	return {output: transformedOutput, error: errors.find(error => error !== undefined)};
};

// When the subprocess fails to spawn, `spawnSync()` returns no output. Like with asynchronous methods, each piped output is empty instead.
// This is the output `spawnSync()` returns when the subprocess succeeds without printing anything: `stdin` and non-piped file descriptors are `null`. Input pipes on other file descriptors cannot be used with synchronous methods.
const getSpawnFailureOutput = ({stdio}) => stdio.map((stdioOption, fdNumber) => fdNumber !== 0 && stdioOption === 'pipe' ? new Uint8Array() : null);

const transformOutputResultSync = (
	{result, fileDescriptors, fdNumber, errors, outputFiles, verboseInfo},
	{buffer, encoding, lines, stripFinalNewline, maxBuffer},
) => {
	if (result === null) {
		return;
	}

	const truncatedResult = truncateMaxBufferSync(result, fdNumber, {maxBuffer, buffer});
	const uint8ArrayResult = bufferToUint8Array(truncatedResult);
	const {stdioItems, objectMode} = fileDescriptors[fdNumber];
	// Empty output must not be passed as a chunk: with a binary encoding, no line is split, so transforms would wrongly run on it
	const {chunks, error: transformError} = runOutputGeneratorsSync(uint8ArrayResult.length === 0 ? [] : [uint8ArrayResult], stdioItems, encoding);
	const {serializedResult, finalResult} = serializeChunks({
		chunks,
		objectMode,
		encoding,
		lines,
		stripFinalNewline,
		fdNumber,
	});

	const logError = logOutputSync({
		serializedResult,
		fdNumber,
		verboseInfo,
		encoding,
		stdioItems,
		objectMode,
	});

	const error = transformError ?? logError;
	errors.push(error);

	const returnedResult = buffer[fdNumber] ? finalResult : undefined;

	try {
		if (error === undefined) {
			writeToFiles(chunks, stdioItems, outputFiles);
		}

		return returnedResult;
	} catch (writeError) {
		errors.push(writeError);
		return returnedResult;
	}
};

// Applies transform generators to `stdout`/`stderr`
const runOutputGeneratorsSync = (chunks, stdioItems, encoding) => {
	try {
		// `error` is set, so that a polluted `Object.prototype.error` is not read when destructuring
		return {chunks: runGeneratorsSync(chunks, stdioItems, encoding, false), error: undefined};
	} catch (error) {
		// Raw output must not bypass a failed transform, which might be filtering sensitive data.
		return {chunks: [], error};
	}
};

// The contents is converted to three stages:
//  - serializedResult: used by `verbose`
//  - finalResult/returnedResult: returned as `result.std*`
const serializeChunks = ({chunks, objectMode, encoding, lines, stripFinalNewline, fdNumber}) => {
	if (objectMode) {
		return {serializedResult: chunks, finalResult: chunks};
	}

	if (encoding === 'buffer') {
		const serializedResult = joinToUint8Array(chunks);
		return {serializedResult, finalResult: serializedResult};
	}

	const serializedResult = joinToString(chunks, encoding);
	const finalResult = lines[fdNumber] ? splitLinesSync(serializedResult, !stripFinalNewline[fdNumber], objectMode) : serializedResult;
	return {serializedResult, finalResult};
};

const logOutputSync = ({serializedResult, fdNumber, verboseInfo, encoding, stdioItems, objectMode}) => {
	if (!shouldLogOutput({
		stdioItems,
		encoding,
		verboseInfo,
		fdNumber,
	})) {
		return;
	}

	const linesArray = splitLinesSync(serializedResult, false, objectMode);

	try {
		logLinesSync(linesArray, fdNumber, verboseInfo);
	} catch (error) {
		return error;
	}
};

// When the `std*` target is a file path/URL or a file descriptor
// Object mode cannot be used with those targets.
const writeToFiles = (chunks, stdioItems, outputFiles) => {
	const fileItems = stdioItems.filter(({type}) => FILE_TYPES.has(type));
	if (fileItems.length === 0) {
		return;
	}

	// Like with asynchronous methods, the bytes are written as is, not the text decoded with the `encoding` option, which would change them
	const contents = joinToUint8Array(chunks);
	const writtenPaths = new Set();

	for (const stdioItem of fileItems) {
		const {type, append} = stdioItem;
		// A `filePath` and a `fileUrl` can target the same file, so they must share the same key
		const path = type === 'fileNumber' ? stdioItem.path : getFileTarget(stdioItem);

		// A single file descriptor can target the same file twice, e.g. `stdout: [{file}, {file}]`.
		// Its output is a single stream, so it must only be written once.
		if (writtenPaths.has(path)) {
			continue;
		}

		writtenPaths.add(path);
		// Like with asynchronous methods, when several file descriptors target the same file, the first one decides whether it is appended to
		if (append || outputFiles.has(path)) {
			(0,external_node_fs_namespaceObject.appendFileSync)(path, contents);
		} else {
			(0,external_node_fs_namespaceObject.writeFileSync)(path, contents);
		}

		outputFiles.add(path);
	}
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/resolve/exit-async.js



// If `error` is emitted before `spawn`, `exit` will never be emitted.
// However, `error` might be emitted after `spawn`.
// In that case, `exit` will still be emitted.
// Since the `exit` event contains the signal name, we want to make sure we are listening for it.
// This function also takes into account the following unlikely cases:
//  - `exit` being emitted in the same microtask as `spawn`
//  - `error` being emitted multiple times
const waitForExit = async (subprocess, context) => {
	const [exitCode, signal] = await waitForExitOrError(subprocess);
	context.isForcefullyTerminated ??= false;
	return [exitCode, signal];
};

const waitForExitOrError = async subprocess => {
	const [spawnPayload, exitPayload] = await Promise.allSettled([
		(0,external_node_events_namespaceObject.once)(subprocess, 'spawn'),
		(0,external_node_events_namespaceObject.once)(subprocess, 'exit'),
	]);

	if (spawnPayload.status === 'rejected') {
		return [];
	}

	return exitPayload.status === 'rejected'
		? waitForSubprocessExit(subprocess)
		: exitPayload.value;
};

const waitForSubprocessExit = async subprocess => {
	try {
		return await (0,external_node_events_namespaceObject.once)(subprocess, 'exit');
	} catch {
		return waitForSubprocessExit(subprocess);
	}
};

// Retrieve the final exit code and|or signal name
const waitForSuccessfulExit = async exitPromise => {
	const [exitCode, signal] = await exitPromise;

	if (!isSubprocessErrorExit(exitCode, signal) && isFailedExit(exitCode, signal)) {
		throw new DiscardedError();
	}

	return [exitCode, signal];
};

// When the subprocess fails due to an `error` event
const isSubprocessErrorExit = (exitCode, signal) => exitCode === undefined && signal === undefined;
// When the subprocess fails due to a non-0 exit code or to a signal termination
const isFailedExit = (exitCode, signal) => exitCode !== 0 || signal !== null;

;// CONCATENATED MODULE: ./node_modules/execa/lib/resolve/exit-sync.js




// Retrieve exit code, signal name and error information, with synchronous methods
const getExitResultSync = ({error, status: exitCode, signal, output}, {maxBuffer, buffer}) => {
	const initialError = getResultError(error, exitCode, signal);
	const isTimedOut = initialError?.code === 'ETIMEDOUT';
	// A file descriptor over its `maxBuffer` does not stop the subprocess, so the timeout that did is reported instead. That file descriptor is still truncated.
	const {resultError, isMaxBuffer} = isTimedOut
		? {resultError: initialError, isMaxBuffer: false}
		: handleMaxBufferSync({
			resultError: initialError,
			output,
			maxBuffer,
			buffer,
		});
	return {
		resultError,
		exitCode,
		signal,
		timedOut: isTimedOut,
		isMaxBuffer,
	};
};

const getResultError = (error, exitCode, signal) => {
	if (error !== undefined) {
		return error;
	}

	return isFailedExit(exitCode, signal) ? new DiscardedError() : undefined;
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/methods/main-sync.js














// Main shared logic for all sync methods: `execaSync()`, `$.sync()`
const execaCoreSync = (rawFile, rawArguments, rawOptions) => {
	const {file, commandArguments, command, escapedCommand, startTime, verboseInfo, options, fileDescriptors} = handleSyncArguments(rawFile, rawArguments, rawOptions);
	const result = spawnSubprocessSync({
		file,
		commandArguments,
		options,
		command,
		escapedCommand,
		verboseInfo,
		fileDescriptors,
		startTime,
	});
	return handleResult(result, verboseInfo, options);
};

// Compute arguments to pass to `child_process.spawnSync()`
const handleSyncArguments = (rawFile, rawArguments, rawOptions) => {
	const {command, escapedCommand, startTime, verboseInfo} = handleCommand(rawFile, rawArguments, rawOptions);
	const syncOptions = normalizeSyncOptions(rawOptions);
	const {file, commandArguments, options} = normalizeOptions(rawFile, rawArguments, syncOptions);
	validateSyncOptions(options);
	const fileDescriptors = handleStdioSync(options, verboseInfo);
	return {
		file,
		commandArguments,
		command,
		escapedCommand,
		startTime,
		verboseInfo,
		options,
		fileDescriptors,
	};
};

// Options normalization logic specific to sync methods
const normalizeSyncOptions = options => options.node && !options.ipc ? {...options, ipc: false} : options;

// Options validation logic specific to sync methods
const validateSyncOptions = ({ipc, ipcInput, detached, cancelSignal, killDescendants}) => {
	// Any value can be sent over IPC, including falsy ones, so only `undefined` means the option is not set
	if (ipcInput !== undefined) {
		throwInvalidSyncOption('ipcInput');
	}

	if (ipc) {
		throwInvalidSyncOption('ipc: true');
	}

	if (detached) {
		throwInvalidSyncOption('detached: true');
	}

	if (killDescendants) {
		throwInvalidSyncOption('killDescendants: true');
	}

	if (cancelSignal) {
		throwInvalidSyncOption('cancelSignal');
	}
};

const throwInvalidSyncOption = value => {
	throw new TypeError(`The "${value}" option cannot be used with synchronous methods.`);
};

const spawnSubprocessSync = ({file, commandArguments, options, command, escapedCommand, verboseInfo, fileDescriptors, startTime}) => {
	const syncResult = runSubprocessSync({
		file,
		commandArguments,
		options,
		command,
		escapedCommand,
		fileDescriptors,
		startTime,
	});
	if (syncResult.failed) {
		return syncResult;
	}

	const {resultError, exitCode, signal, timedOut, isMaxBuffer} = getExitResultSync(syncResult, options);
	const {output, error = resultError} = transformOutputSync({
		fileDescriptors,
		syncResult,
		options,
		verboseInfo,
	});
	const stdio = output.map((stdioOutput, fdNumber) => stripNewline(stdioOutput, options, fdNumber));
	const allFds = getAllSyncFds(output);
	const all = stripNewline(getAllSync(output, allFds, options), options, 'all', allFds);
	return getSyncResult({
		error,
		exitCode,
		signal,
		timedOut,
		isMaxBuffer,
		stdio,
		all,
		options,
		command,
		escapedCommand,
		startTime,
	});
};

const runSubprocessSync = ({file, commandArguments, options, command, escapedCommand, fileDescriptors, startTime}) => {
	try {
		addInputOptionsSync(fileDescriptors, options);
		const normalizedOptions = normalizeSpawnSyncOptions(options);
		// Keep the null prototype, otherwise a polluted `Object.prototype.failed` would make the result look like an early error
		return {__proto__: null, ...(0,external_node_child_process_namespaceObject.spawnSync)(...concatenateShell(file, commandArguments, normalizedOptions))};
	} catch (error) {
		return makeEarlyError({
			error,
			command,
			escapedCommand,
			fileDescriptors,
			options,
			startTime,
			isSync: true,
			...getEarlyErrorOutput(fileDescriptors, options),
		});
	}
};

// The `encoding` option is handled by Execa, not by `child_process.spawnSync()`
const normalizeSpawnSyncOptions = ({encoding, maxBuffer, ...options}) => ({...options, encoding: 'buffer', maxBuffer: getMaxBufferSync(maxBuffer)});

const getSyncResult = ({error, exitCode, signal, timedOut, isMaxBuffer, stdio, all, options, command, escapedCommand, startTime}) => error === undefined
	? makeSuccessResult({
		command,
		escapedCommand,
		stdio,
		all,
		ipcOutput: [],
		options,
		startTime,
	})
	: makeError({
		error,
		command,
		escapedCommand,
		timedOut,
		isCanceled: false,
		isGracefullyCanceled: false,
		isMaxBuffer,
		isForcefullyTerminated: false,
		exitCode,
		signal,
		stdio,
		all,
		ipcOutput: [],
		options,
		startTime,
		isSync: true,
	});

;// CONCATENATED MODULE: ./node_modules/execa/lib/ipc/get-one.js






const internalGetOneMessageOptions = Symbol('internalGetOneMessageOptions');

// Like `[sub]process.once('message')` but promise-based
const getOneMessage = ({anyProcess, channel, isSubprocess, ipc}, rawOptions) => {
	const options = copyOptions(rawOptions);
	const {reference = true, filter} = options;
	const {signal} = options[internalGetOneMessageOptions] ?? {};

	validateIpcMethod({
		methodName: 'getOneMessage',
		isSubprocess,
		ipc,
		isConnected: isConnected(anyProcess),
	});

	return getOneMessageAsync({
		anyProcess,
		channel,
		isSubprocess,
		filter,
		reference,
		signal,
	});
};

const getOneMessageAsync = async ({anyProcess, channel, isSubprocess, filter, reference, signal}) => {
	addReference(channel, reference);
	const ipcEmitter = getIpcEmitter(anyProcess, channel, isSubprocess);
	const controller = new AbortController();
	stopOnAbort(signal, controller);

	try {
		return await Promise.race([
			getMessage(ipcEmitter, filter, controller),
			get_one_throwOnDisconnect(ipcEmitter, isSubprocess, controller),
			throwOnStrictError(ipcEmitter, isSubprocess, controller),
		]);
	} catch (error) {
		// When the internal `signal` stops the read, e.g. when a `.pipe()` is canceled, the subprocess keeps running and can still use IPC
		if (!signal?.aborted) {
			disconnect(anyProcess);
		}

		throw error;
	} finally {
		controller.abort();
		removeReference(channel, reference);
	}
};

const stopOnAbort = (signal, controller) => {
	if (signal === undefined) {
		return;
	}

	if (signal.aborted) {
		controller.abort();
		return;
	}

	signal.addEventListener('abort', () => {
		controller.abort();
	}, {once: true, signal: controller.signal});
};

const getMessage = async (ipcEmitter, filter, {signal}) => {
	if (filter === undefined) {
		const [message] = await (0,external_node_events_namespaceObject.once)(ipcEmitter, 'message', {signal});
		return message;
	}

	for await (const [message] of (0,external_node_events_namespaceObject.on)(ipcEmitter, 'message', {signal})) {
		if (filter(message)) {
			return message;
		}
	}
};

const get_one_throwOnDisconnect = async (ipcEmitter, isSubprocess, {signal}) => {
	await (0,external_node_events_namespaceObject.once)(ipcEmitter, 'disconnect', {signal});
	throwOnEarlyDisconnect(isSubprocess);
};

const throwOnStrictError = async (ipcEmitter, isSubprocess, {signal}) => {
	const [error] = await (0,external_node_events_namespaceObject.once)(ipcEmitter, 'strict:error', {signal});
	throw getStrictResponseError(error, isSubprocess);
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/ipc/get-each.js






const internalGetEachMessageOptions = Symbol('internalGetEachMessageOptions');

// Like `[sub]process.on('message')` but promise-based
const getEachMessage = (subprocessInfo, rawOptions) => {
	const options = copyOptions(rawOptions);
	const {reference = true} = options;
	// Internal callers can stop the IPC listener without exposing cancellation or pipe-awaiting options as public API.
	const {signal, shouldAwait = !subprocessInfo.isSubprocess} = options[internalGetEachMessageOptions] ?? {};

	return loopOnMessages({
		...subprocessInfo,
		shouldAwait,
		reference,
		signal,
	});
};

// Same but used internally
const loopOnMessages = ({anyProcess, waitProcess = anyProcess, channel, isSubprocess, ipc, shouldAwait, reference, signal}) => {
	validateIpcMethod({
		methodName: 'getEachMessage',
		isSubprocess,
		ipc,
		isConnected: isConnected(anyProcess),
	});

	addReference(channel, reference);
	const ipcEmitter = getIpcEmitter(anyProcess, channel, isSubprocess);
	const controller = new AbortController();
	const state = {};
	get_each_stopOnAbort(signal, controller);
	stopOnDisconnect(anyProcess, ipcEmitter, controller);
	abortOnStrictError({
		ipcEmitter,
		isSubprocess,
		controller,
		state,
	});
	return iterateOnMessages({
		anyProcess,
		waitProcess,
		channel,
		ipcEmitter,
		isSubprocess,
		shouldAwait,
		controller,
		state,
		reference,
		signal,
	});
};

const get_each_stopOnAbort = (signal, controller) => {
	if (signal === undefined) {
		return;
	}

	if (signal.aborted) {
		controller.abort();
		return;
	}

	// Reuse the iterator controller for listener cleanup when iteration ends before the internal signal aborts.
	signal.addEventListener('abort', () => {
		controller.abort();
	}, {once: true, signal: controller.signal});
};

const stopOnDisconnect = async (anyProcess, ipcEmitter, controller) => {
	try {
		await (0,external_node_events_namespaceObject.once)(ipcEmitter, 'disconnect', {signal: controller.signal});
		controller.abort();
	} catch {}
};

const abortOnStrictError = async ({ipcEmitter, isSubprocess, controller, state}) => {
	try {
		const [error] = await (0,external_node_events_namespaceObject.once)(ipcEmitter, 'strict:error', {signal: controller.signal});
		state.error = getStrictResponseError(error, isSubprocess);
		controller.abort();
	} catch {}
};

const iterateOnMessages = async function * ({anyProcess, waitProcess, channel, ipcEmitter, isSubprocess, shouldAwait, controller, state, reference, signal}) {
	try {
		for await (const [message] of (0,external_node_events_namespaceObject.on)(ipcEmitter, 'message', {signal: controller.signal})) {
			throwIfStrictError(state);
			yield message;
		}
	} catch {
		throwIfStrictError(state);
	} finally {
		controller.abort();
		removeReference(channel, reference);

		// When the internal `signal` stops the iteration, e.g. when a `.pipe()` is canceled, the subprocess keeps running and can still use IPC
		if (!isSubprocess && !signal?.aborted) {
			disconnect(anyProcess);
		}

		if (shouldAwait) {
			await waitProcess;
		}
	}
};

const throwIfStrictError = ({error}) => {
	if (error) {
		throw error;
	}
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/ipc/methods.js






// Add promise-based IPC methods in current process
const addIpcMethods = (target, subprocess, {ipc}) => {
	Object.assign(target, getIpcMethods(subprocess, false, ipc, target));
};

// Get promise-based IPC in the subprocess
const getIpcExport = () => {
	const anyProcess = external_node_process_namespaceObject;
	const isSubprocess = true;
	const isIpc = external_node_process_namespaceObject.channel !== undefined;

	return {
		...getIpcMethods(anyProcess, isSubprocess, isIpc),
		getCancelSignal: getCancelSignal.bind(undefined, {
			anyProcess,
			channel: anyProcess.channel,
			isSubprocess,
			ipc: isIpc,
		}),
	};
};

// Retrieve the `ipc` shared by both the current process and the subprocess
const getIpcMethods = (anyProcess, isSubprocess, ipc, waitProcess = anyProcess) => ({
	sendMessage: sendMessage.bind(undefined, {
		anyProcess,
		channel: anyProcess.channel,
		isSubprocess,
		ipc,
	}),
	getOneMessage: getOneMessage.bind(undefined, {
		anyProcess,
		channel: anyProcess.channel,
		isSubprocess,
		ipc,
	}),
	getEachMessage: getEachMessage.bind(undefined, {
		anyProcess,
		channel: anyProcess.channel,
		isSubprocess,
		ipc,
		waitProcess,
	}),
});

;// CONCATENATED MODULE: ./node_modules/execa/lib/return/early-error.js







// When the subprocess fails to spawn.
// We ensure the returned error is always both a promise and a subprocess.
const handleEarlyError = ({error, command, escapedCommand, fileDescriptors, options, startTime, verboseInfo}) => {
	cleanupCustomStreams(fileDescriptors);

	const subprocess = new external_node_child_process_namespaceObject.ChildProcess();
	// The subprocess never spawned, so there is no process to signal.
	// `ChildProcess.prototype.kill()` would signal the current process group instead, since its process id is `0`.
	subprocess.kill = () => false;
	const all = createDummyStreams(subprocess, fileDescriptors);

	const promise = handleDummyPromise({
		error,
		command,
		escapedCommand,
		fileDescriptors,
		options,
		startTime,
		verboseInfo,
	});
	return {
		subprocess,
		promise,
		all: options.all ? all : undefined,
		convertedStreams: getConvertedStreams(promise),
	};
};

const createDummyStreams = (subprocess, fileDescriptors) => {
	const stdin = createDummyStream();
	const stdout = createDummyStream();
	const stderr = createDummyStream();
	const extraStdio = Array.from({length: fileDescriptors.length - 3}, createDummyStream);
	const all = createDummyStream();
	const stdio = [stdin, stdout, stderr, ...extraStdio];
	Object.assign(subprocess, {
		stdin,
		stdout,
		stderr,
		stdio,
	});
	return all;
};

// Writing to an ended stream emits an error, which would crash the current process when the user writes to `subprocess.stdin`.
// Like when the subprocess exits before reading its input, that input is discarded instead.
const createDummyStream = () => {
	const stream = new external_node_stream_namespaceObject.PassThrough();
	stream.on('error', () => {});
	stream.end();
	return stream;
};

// The subprocess never started, so those streams have no contents.
// Like when the subprocess did start, they end once its promise resolves, or error with its error, as opposed to hanging forever.
const getConvertedStreams = promise => {
	const waitForPromise = async () => {
		await promise;
	};

	const endReadable = function () {
		(0,external_node_util_namespaceObject.callbackify)(waitForPromise)(error => {
			if (error) {
				this.destroy(error);
			} else {
				this.push(null);
			}
		});
	};

	const endWritable = (0,external_node_util_namespaceObject.callbackify)(waitForPromise);
	const writeWritable = (chunk, encoding, done) => {
		endWritable(done);
	};

	const readable = () => new external_node_stream_namespaceObject.Readable({read: endReadable});
	const writable = () => new external_node_stream_namespaceObject.Writable({write: writeWritable, final: endWritable});
	const duplex = () => new external_node_stream_namespaceObject.Duplex({read: endReadable, write: writeWritable, final: endWritable});
	const iterable = () => readable()[Symbol.asyncIterator]();

	return {
		readable,
		writable,
		duplex,
		readableStream: () => external_node_stream_namespaceObject.Readable.toWeb(readable()),
		writableStream: () => external_node_stream_namespaceObject.Writable.toWeb(writable()),
		transformStream: () => external_node_stream_namespaceObject.Duplex.toWeb(duplex()),
		iterable,
		[Symbol.asyncIterator]: iterable,
	};
};

// `error` is a promise when the spawn error is only emitted on the next tick
const handleDummyPromise = async ({error, command, escapedCommand, fileDescriptors, options, startTime, verboseInfo}) => {
	const earlyError = makeEarlyError({
		error: await error,
		command,
		escapedCommand,
		fileDescriptors,
		options,
		startTime,
		isSync: false,
		...getEarlyErrorOutput(fileDescriptors, options),
	});
	return handleResult(earlyError, verboseInfo, options);
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/stdio/handle-async.js









// Handle `input`, `inputFile`, `stdin`, `stdout` and `stderr` options, before spawning, in async mode
const handleStdioAsync = (options, verboseInfo) => handleStdio(addPropertiesAsync, options, verboseInfo, false);

const forbiddenIfAsync = ({type, optionName}) => {
	throw new TypeError(`The \`${optionName}\` option cannot be ${TYPE_TO_MESSAGE[type]}.`);
};

// Create streams used internally for piping when using specific values for the `std*` options, in async mode.
// For example, `stdout: {file}` creates a file stream, which is piped from/to.
const handle_async_addProperties = {
	fileNumber: forbiddenIfAsync,
	generator: generatorToStream,
	asyncGenerator: generatorToStream,
	nodeStream: ({value}) => ({stream: value}),
	// `Duplex.fromWeb()` uses the same `objectMode` for both sides
	webTransform: ({value: {transform, writableObjectMode, readableObjectMode}}) => ({
		stream: external_node_stream_namespaceObject.Duplex.from({
			writable: external_node_stream_namespaceObject.Writable.fromWeb(transform.writable, {objectMode: writableObjectMode}),
			readable: external_node_stream_namespaceObject.Readable.fromWeb(transform.readable, {objectMode: readableObjectMode}),
		}),
	}),
	duplex: ({value: {transform}}) => ({stream: transform}),
	native() {},
};

// Without transforms in object mode, iterable values are written to the subprocess, which only accepts strings and Uint8Arrays.
// `Readable.from()` emits the values of synchronous iterables on a later tick, where `subprocess.stdin.write()` throwing would crash the current process. Throwing while iterating errors the stream instead.
// Synchronous iterables must stay synchronous, otherwise their order would change when they are combined with other input sources.
const validateIterable = function * (iterable, optionName) {
	for (const value of iterable) {
		validateIterableValue(value, optionName);
		yield value;
	}
};

const validateAsyncIterable = async function * (iterable, optionName) {
	for await (const value of iterable) {
		validateIterableValue(value, optionName);
		yield value;
	}
};

const validateIterableValue = (value, optionName) => {
	if (!isSerializableInput(value)) {
		throwOnSerializableInput(optionName, value);
	}
};

// Empty input is not passed as a chunk, otherwise binary transforms, which do not split lines, would run on it
const readableFromChunk = chunk => external_node_stream_namespaceObject.Readable.from(chunk.length === 0 ? [] : [chunk]);

// Input transforms use UTF-8 with text encodings, since those only apply to the output
const generatorToInputStream = (stdioItem, {encoding}) => generatorToStream(stdioItem, {encoding: getInputEncoding(encoding)});

const addPropertiesAsync = {
	input: {
		...handle_async_addProperties,
		generator: generatorToInputStream,
		asyncGenerator: generatorToInputStream,
		fileUrl: ({value}) => ({stream: (0,external_node_fs_namespaceObject.createReadStream)(value)}),
		filePath: ({value: {file}}) => ({stream: (0,external_node_fs_namespaceObject.createReadStream)(file)}),
		webStream: ({value}, options, objectMode) => ({stream: external_node_stream_namespaceObject.Readable.fromWeb(value, {objectMode})}),
		iterable: ({value, optionName}, options, objectMode) => ({stream: external_node_stream_namespaceObject.Readable.from(objectMode ? value : validateIterable(value, optionName))}),
		asyncIterable: ({value, optionName}, options, objectMode) => ({stream: external_node_stream_namespaceObject.Readable.from(objectMode ? value : validateAsyncIterable(value, optionName))}),
		string: ({value}) => ({stream: readableFromChunk(value)}),
		uint8Array: ({value}) => ({stream: readableFromChunk(external_node_buffer_namespaceObject.Buffer.from(value))}),
	},
	output: {
		...handle_async_addProperties,
		fileUrl: ({value}) => ({stream: (0,external_node_fs_namespaceObject.createWriteStream)(value)}),
		filePath: ({value: {file, append}}) => ({stream: (0,external_node_fs_namespaceObject.createWriteStream)(file, append ? {flags: 'a'} : {})}),
		// Web writers accept arbitrary chunks, including when a shared writer receives both bytes and objects.
		webStream: ({value}) => ({stream: external_node_stream_namespaceObject.Writable.fromWeb(value, {objectMode: true})}),
		iterable: forbiddenIfAsync,
		asyncIterable: forbiddenIfAsync,
		string: forbiddenIfAsync,
		uint8Array: forbiddenIfAsync,
	},
};

;// CONCATENATED MODULE: external "node:stream/promises"
const external_node_stream_promises_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:stream/promises");
;// CONCATENATED MODULE: ./node_modules/@sindresorhus/merge-streams/index.js




function mergeStreams(streams) {
	if (!Array.isArray(streams)) {
		throw new TypeError(`Expected an array, got \`${typeof streams}\`.`);
	}

	for (const stream of streams) {
		validateStream(stream);
	}

	const objectMode = streams.some(({readableObjectMode}) => readableObjectMode);
	const highWaterMark = getHighWaterMark(streams, objectMode);
	const passThroughStream = new MergedStream({
		objectMode,
		writableHighWaterMark: highWaterMark,
		readableHighWaterMark: highWaterMark,
	});

	for (const stream of streams) {
		passThroughStream.add(stream);
	}

	return passThroughStream;
}

const getHighWaterMark = (streams, objectMode) => {
	if (streams.length === 0) {
		return (0,external_node_stream_namespaceObject.getDefaultHighWaterMark)(objectMode);
	}

	const highWaterMarks = streams
		.filter(({readableObjectMode}) => readableObjectMode === objectMode)
		.map(({readableHighWaterMark}) => readableHighWaterMark);
	return Math.max(...highWaterMarks);
};

class MergedStream extends external_node_stream_namespaceObject.PassThrough {
	#streams = new Set([]);
	#ended = new Set([]);
	#aborted = new Set([]);
	#onFinished;
	#unpipeEvent = Symbol('unpipe');
	#streamPromises = new WeakMap();

	add(stream) {
		validateStream(stream);

		if (this.#streams.has(stream)) {
			return;
		}

		this.#streams.add(stream);

		this.#onFinished ??= onMergedStreamFinished(this, this.#streams, this.#unpipeEvent);
		const streamPromise = endWhenStreamsDone({
			passThroughStream: this,
			stream,
			streams: this.#streams,
			ended: this.#ended,
			aborted: this.#aborted,
			onFinished: this.#onFinished,
			unpipeEvent: this.#unpipeEvent,
		});
		this.#streamPromises.set(stream, streamPromise);

		stream.pipe(this, {end: false});
	}

	async remove(stream) {
		validateStream(stream);

		if (!this.#streams.has(stream)) {
			return false;
		}

		const streamPromise = this.#streamPromises.get(stream);
		if (streamPromise === undefined) {
			return false;
		}

		this.#streamPromises.delete(stream);

		stream.unpipe(this);
		await streamPromise;
		return true;
	}
}

const onMergedStreamFinished = async (passThroughStream, streams, unpipeEvent) => {
	updateMaxListeners(passThroughStream, PASSTHROUGH_LISTENERS_COUNT);
	const controller = new AbortController();

	try {
		await Promise.race([
			onMergedStreamEnd(passThroughStream, controller),
			onInputStreamsUnpipe(passThroughStream, streams, unpipeEvent, controller),
		]);
	} finally {
		controller.abort();
		updateMaxListeners(passThroughStream, -PASSTHROUGH_LISTENERS_COUNT);
	}
};

const onMergedStreamEnd = async (passThroughStream, {signal}) => {
	try {
		await (0,external_node_stream_promises_namespaceObject.finished)(passThroughStream, {signal, cleanup: true});
	} catch (error) {
		errorOrAbortStream(passThroughStream, error);
		throw error;
	}
};

const onInputStreamsUnpipe = async (passThroughStream, streams, unpipeEvent, {signal}) => {
	for await (const [unpipedStream] of (0,external_node_events_namespaceObject.on)(passThroughStream, 'unpipe', {signal})) {
		if (streams.has(unpipedStream)) {
			unpipedStream.emit(unpipeEvent);
		}
	}
};

const validateStream = stream => {
	if (typeof stream?.pipe !== 'function') {
		throw new TypeError(`Expected a readable stream, got: \`${typeof stream}\`.`);
	}
};

const endWhenStreamsDone = async ({passThroughStream, stream, streams, ended, aborted, onFinished, unpipeEvent}) => {
	updateMaxListeners(passThroughStream, PASSTHROUGH_LISTENERS_PER_STREAM);
	const controller = new AbortController();

	try {
		await Promise.race([
			afterMergedStreamFinished(onFinished, stream, controller),
			onInputStreamEnd({
				passThroughStream,
				stream,
				streams,
				ended,
				aborted,
				controller,
			}),
			onInputStreamUnpipe({
				stream,
				streams,
				ended,
				aborted,
				unpipeEvent,
				controller,
			}),
		]);
	} finally {
		controller.abort();
		updateMaxListeners(passThroughStream, -PASSTHROUGH_LISTENERS_PER_STREAM);
	}

	if (streams.size > 0 && streams.size === ended.size + aborted.size) {
		if (ended.size === 0 && aborted.size > 0) {
			abortStream(passThroughStream);
		} else {
			endStream(passThroughStream);
		}
	}
};

const afterMergedStreamFinished = async (onFinished, stream, {signal}) => {
	try {
		await onFinished;
		if (!signal.aborted) {
			abortStream(stream);
		}
	} catch (error) {
		if (!signal.aborted) {
			errorOrAbortStream(stream, error);
		}
	}
};

const onInputStreamEnd = async ({passThroughStream, stream, streams, ended, aborted, controller: {signal}}) => {
	try {
		await (0,external_node_stream_promises_namespaceObject.finished)(stream, {
			signal,
			cleanup: true,
			readable: true,
			writable: false,
		});
		if (streams.has(stream)) {
			ended.add(stream);
		}
	} catch (error) {
		if (signal.aborted || !streams.has(stream)) {
			return;
		}

		if (isAbortError(error)) {
			aborted.add(stream);
		} else {
			errorStream(passThroughStream, error);
		}
	}
};

const onInputStreamUnpipe = async ({stream, streams, ended, aborted, unpipeEvent, controller: {signal}}) => {
	await (0,external_node_events_namespaceObject.once)(stream, unpipeEvent, {signal});

	if (!stream.readable) {
		return (0,external_node_events_namespaceObject.once)(signal, 'abort', {signal});
	}

	streams.delete(stream);
	ended.delete(stream);
	aborted.delete(stream);
};

const endStream = stream => {
	if (stream.writable) {
		stream.end();
	}
};

const errorOrAbortStream = (stream, error) => {
	if (isAbortError(error)) {
		abortStream(stream);
	} else {
		errorStream(stream, error);
	}
};

// This is the error thrown by `finished()` on `stream.destroy()`
const isAbortError = error => error?.code === 'ERR_STREAM_PREMATURE_CLOSE';

const abortStream = stream => {
	if (stream.readable || stream.writable) {
		stream.destroy();
	}
};

// `stream.destroy(error)` crashes the process with `uncaughtException` if no `error` event listener exists on `stream`.
// We take care of error handling on user behalf, so we do not want this to happen.
const errorStream = (stream, error) => {
	if (!stream.destroyed) {
		stream.once('error', noop);
		stream.destroy(error);
	}
};

const noop = () => {};

const updateMaxListeners = (passThroughStream, increment) => {
	const maxListeners = passThroughStream.getMaxListeners();
	if (maxListeners !== 0 && maxListeners !== Number.POSITIVE_INFINITY) {
		passThroughStream.setMaxListeners(maxListeners + increment);
	}
};

// Number of times `passThroughStream.on()` is called regardless of streams:
//  - once due to `finished(passThroughStream)`
//  - once due to `on(passThroughStream)`
const PASSTHROUGH_LISTENERS_COUNT = 2;

// Number of times `passThroughStream.on()` is called per stream:
//  - once due to `stream.pipe(passThroughStream)`
const PASSTHROUGH_LISTENERS_PER_STREAM = 1;

;// CONCATENATED MODULE: ./node_modules/execa/lib/io/pipeline.js



// Similar to `Stream.pipeline(source, destination)`, but does not destroy standard streams.
// `onDestinationEnd` runs when the destination ends, before the source is aborted.
const pipeStreams = (source, destination, onDestinationEnd) => {
	source.pipe(destination);
	onSourceFinish(source, destination);
	onDestinationFinish(source, destination, onDestinationEnd);
};

// `source.pipe(destination)` makes `destination` end when `source` ends.
// But it does not propagate aborts or errors. This function does it.
const onSourceFinish = async (source, destination) => {
	if (isStandardStream(source) || isStandardStream(destination)) {
		return;
	}

	try {
		await (0,external_node_stream_promises_namespaceObject.finished)(source, {cleanup: true, readable: true, writable: false});
	} catch {}

	endDestinationStream(destination);
};

const endDestinationStream = destination => {
	if (destination.writable) {
		destination.end();
	}
};

// We do the same thing in the other direction as well.
const onDestinationFinish = async (source, destination, onDestinationEnd) => {
	if (isStandardStream(source) || isStandardStream(destination)) {
		return;
	}

	try {
		await (0,external_node_stream_promises_namespaceObject.finished)(destination, {cleanup: true, readable: false, writable: true});
	} catch {}

	if (onDestinationEnd !== undefined) {
		await onDestinationEnd();
	}

	abortSourceStream(source);
};

const abortSourceStream = source => {
	if (source.readable) {
		source.destroy();
	}
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/io/output-async.js






// Handle `input`, `inputFile`, `stdin`, `stdout` and `stderr` options, after spawning, in async mode
// When multiple input streams are used, we merge them to ensure the output stream ends only once each input stream has ended
const pipeOutputAsync = (subprocess, fileDescriptors, controller) => {
	const pipeGroups = new Map();

	for (const [fdNumber, {stdioItems, direction}] of Object.entries(fileDescriptors)) {
		const transformItems = stdioItems.filter(({type}) => TRANSFORM_TYPES.has(type));
		for (const {stream} of transformItems) {
			pipeTransform(subprocess, stream, direction, fdNumber);
		}

		const nonTransformItems = stdioItems.filter(({type}) => !TRANSFORM_TYPES.has(type));
		for (const {stream} of nonTransformItems) {
			pipeStdioItem({
				subprocess,
				stream,
				direction,
				fdNumber,
				pipeGroups,
				controller,
			});
		}
	}

	for (const [outputStream, inputStreams] of pipeGroups) {
		const inputStream = inputStreams.length === 1 ? inputStreams[0] : mergeStreams(inputStreams);
		pipeStreams(inputStream, outputStream);
	}
};

// When using transforms, `subprocess.stdin|stdout|stderr|stdio` is directly mutated
const pipeTransform = (subprocess, stream, direction, fdNumber) => {
	if (direction === 'output') {
		pipeStreams(subprocess.stdio[fdNumber], stream);
	} else {
		pipeStreams(stream, subprocess.stdio[fdNumber]);
	}

	const streamProperty = SUBPROCESS_STREAM_PROPERTIES[fdNumber];
	if (streamProperty !== undefined) {
		subprocess[streamProperty] = stream;
	}

	subprocess.stdio[fdNumber] = stream;
};

const SUBPROCESS_STREAM_PROPERTIES = ['stdin', 'stdout', 'stderr'];

// Most `std*` option values involve piping `subprocess.std*` to a stream.
// The stream is either passed by the user or created internally.
const pipeStdioItem = ({subprocess, stream, direction, fdNumber, pipeGroups, controller}) => {
	if (stream === undefined) {
		return;
	}

	setStandardStreamMaxListeners(stream, controller);

	const [inputStream, outputStream] = direction === 'output'
		? [stream, subprocess.stdio[fdNumber]]
		: [subprocess.stdio[fdNumber], stream];
	const outputStreams = pipeGroups.get(inputStream) ?? [];
	pipeGroups.set(inputStream, [...outputStreams, outputStream]);
};

// Multiple subprocesses might be piping from/to `process.std*` at the same time.
// This is not necessarily an error and should not print a `maxListeners` warning.
const setStandardStreamMaxListeners = (stream, {signal}) => {
	if (isStandardStream(stream)) {
		incrementMaxListeners(stream, MAX_LISTENERS_INCREMENT, signal);
	}
};

// `source.pipe(destination)` adds at most 1 listener for each event.
// If `stdin` option is an array, the values might be combined with `merge-streams`.
// That library also listens for `source` end, which adds 1 more listener.
const MAX_LISTENERS_INCREMENT = 2;

;// CONCATENATED MODULE: external "node:path/win32"
const win32_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:path/win32");
;// CONCATENATED MODULE: ./node_modules/execa/lib/terminate/kill-descendants.js




const kill_descendants_isWindows = external_node_process_namespaceObject.platform === 'win32';

// The `killDescendants` option terminates the whole process tree, not just the direct child.
// On Unix, this requires spawning the subprocess in its own process group, so we override the
// `detached` argument passed to `child_process.spawn()`.
// This is kept separate from the user-facing `detached` option, which must keep its own value,
// so the `cleanup` behavior is not affected.
const getSpawnOptions = options => !kill_descendants_isWindows && options.killDescendants
	? {...options, detached: true}
	: options;

// Returns the low-level function used to send a signal to the subprocess.
// With the `killDescendants` option, the signal is sent to the whole process tree.
const getKillFunction = (subprocess, {killDescendants}) => {
	if (!killDescendants) {
		/*
		`subprocess.pid` is `undefined` when the subprocess failed to spawn, e.g. with `ENOENT`.
		`ChildProcess.prototype.kill()` then signals the current process group, since its process id is `0`.
		So, like `ChildProcess.prototype.kill()` does for a subprocess which already exited, nothing is signaled and `false` is returned.
		*/
		const killSubprocess = subprocess.kill.bind(subprocess);
		return (...arguments_) => (subprocess.pid === undefined ? false : killSubprocess(...arguments_));
	}

	const killDescendantsFunction = kill_descendants_isWindows ? killDescendantsWindows : killDescendantsUnix;
	return killDescendantsFunction.bind(undefined, subprocess);
};

/*
Unlike `subprocess.kill()`, signaling a process group or a process tree uses the PID directly, without going through the subprocess' handle. The OS can re-assign that PID once it is not used anymore, and signaling it then would terminate an unrelated process, and on Windows its own descendants too.
On Unix, a PID stays reserved as long as it is the process group ID of a running process, i.e. as long as any descendant in that group is still running. So signaling the process group after the subprocess exited is still useful, e.g. for the `forceKillAfterDelay` escalation while Execa is waiting on a descendant, or with `subprocess.kill()` to terminate background descendants once the subprocess has settled. Once the whole group exited, the PID can only be signaled if the OS re-assigned it to a new process group leader, which is unlikely, so this is a documented limitation.
On Windows, there are no process groups: a PID is only reserved while a handle to the process is open, which Node.js closes once the subprocess exits. `taskkill /T` also cannot find the descendants of a process which exited. So the process tree is never signaled once the subprocess exited.
*/
const isAbandoned = subprocess => subprocess.pid === undefined
	|| (kill_descendants_isWindows && hasExited(subprocess));

const hasExited = ({exitCode, signalCode}) => exitCode !== null || signalCode !== null;

// On Unix, the subprocess is its own process group leader (its PGID equals its PID), since it
// was spawned with `detached: true`. Sending the signal to `-pid` targets the whole group.
const killDescendantsUnix = (subprocess, signal) => {
	if (isAbandoned(subprocess)) {
		return false;
	}

	try {
		return external_node_process_namespaceObject.kill(-subprocess.pid, signal);
	} catch {
		// The process group might already be gone, or signaling it might not be permitted, so we
		// fall back to the direct child. Like `ChildProcess.kill()`, this returns `false` instead of throwing.
		return subprocess.kill(signal);
	}
};

// Windows has no process groups. Instead, `taskkill /T` recursively terminates the process tree.
// It must run while the tree is still intact, so direct subprocess termination is only used as a
// fallback: killing the direct subprocess first would orphan its descendants before `taskkill` could enumerate them.
// If `taskkill` is unavailable or fails, the fallback only terminates the direct subprocess.
// `taskkill` ignores the signal (`/F` terminates the tree).
const killDescendantsWindows = (subprocess, signal) => {
	if (isAbandoned(subprocess)) {
		return false;
	}

	const taskkillFile = getTaskkillFile();
	if (taskkillFile === undefined) {
		return subprocess.kill(signal);
	}

	// This is best-effort: if `taskkill` fails, still try the direct subprocess.
	(0,external_node_child_process_namespaceObject.execFile)(taskkillFile, ['/pid', `${subprocess.pid}`, '/T', '/F'], error => {
		if (error) {
			subprocess.kill(signal);
		}
	});
	return true;
};

const getTaskkillFile = () => {
	const windowsDirectory = [external_node_process_namespaceObject.env.SystemRoot, external_node_process_namespaceObject.env.windir]
		.find(directory => directory && isWindowsDriveAbsolutePath(directory));

	return windowsDirectory === undefined
		? undefined
		: win32_namespaceObject.join(windowsDirectory, 'System32', 'taskkill.exe');
};

const isWindowsDriveAbsolutePath = directory => {
	const {root} = win32_namespaceObject.parse(directory);
	return /^[a-z]:[/\\]/i.test(root);
};

;// CONCATENATED MODULE: ./node_modules/signal-exit/dist/mjs/signals.js
/**
 * This is not the set of all possible signals.
 *
 * It IS, however, the set of all signals that trigger
 * an exit on either Linux or BSD systems.  Linux is a
 * superset of the signal names supported on BSD, and
 * the unknown signals just fail to register, so we can
 * catch that easily enough.
 *
 * Windows signals are a different set, since there are
 * signals that terminate Windows processes, but don't
 * terminate (or don't even exist) on Posix systems.
 *
 * Don't bother with SIGKILL.  It's uncatchable, which
 * means that we can't fire any callbacks anyway.
 *
 * If a user does happen to register a handler on a non-
 * fatal signal like SIGWINCH or something, and then
 * exit, it'll end up firing `process.emit('exit')`, so
 * the handler will be fired anyway.
 *
 * SIGBUS, SIGFPE, SIGSEGV and SIGILL, when not raised
 * artificially, inherently leave the process in a
 * state from which it is not safe to try and enter JS
 * listeners.
 */
const signals = [];
signals.push('SIGHUP', 'SIGINT', 'SIGTERM');
if (process.platform !== 'win32') {
    signals.push('SIGALRM', 'SIGABRT', 'SIGVTALRM', 'SIGXCPU', 'SIGXFSZ', 'SIGUSR2', 'SIGTRAP', 'SIGSYS', 'SIGQUIT', 'SIGIOT'
    // should detect profiler and enable/disable accordingly.
    // see #21
    // 'SIGPROF'
    );
}
if (process.platform === 'linux') {
    signals.push('SIGIO', 'SIGPOLL', 'SIGPWR', 'SIGSTKFLT');
}
//# sourceMappingURL=signals.js.map
;// CONCATENATED MODULE: ./node_modules/signal-exit/dist/mjs/index.js
// Note: since nyc uses this module to output coverage, any lines
// that are in the direct sync flow of nyc's outputCoverage are
// ignored, since we can never get coverage for them.
// grab a reference to node's real process object right away


const processOk = (process) => !!process &&
    typeof process === 'object' &&
    typeof process.removeListener === 'function' &&
    typeof process.emit === 'function' &&
    typeof process.reallyExit === 'function' &&
    typeof process.listeners === 'function' &&
    typeof process.kill === 'function' &&
    typeof process.pid === 'number' &&
    typeof process.on === 'function';
const kExitEmitter = Symbol.for('signal-exit emitter');
const global = globalThis;
const ObjectDefineProperty = Object.defineProperty.bind(Object);
// teeny special purpose ee
class Emitter {
    emitted = {
        afterExit: false,
        exit: false,
    };
    listeners = {
        afterExit: [],
        exit: [],
    };
    count = 0;
    id = Math.random();
    constructor() {
        if (global[kExitEmitter]) {
            return global[kExitEmitter];
        }
        ObjectDefineProperty(global, kExitEmitter, {
            value: this,
            writable: false,
            enumerable: false,
            configurable: false,
        });
    }
    on(ev, fn) {
        this.listeners[ev].push(fn);
    }
    removeListener(ev, fn) {
        const list = this.listeners[ev];
        const i = list.indexOf(fn);
        /* c8 ignore start */
        if (i === -1) {
            return;
        }
        /* c8 ignore stop */
        if (i === 0 && list.length === 1) {
            list.length = 0;
        }
        else {
            list.splice(i, 1);
        }
    }
    emit(ev, code, signal) {
        if (this.emitted[ev]) {
            return false;
        }
        this.emitted[ev] = true;
        let ret = false;
        for (const fn of this.listeners[ev]) {
            ret = fn(code, signal) === true || ret;
        }
        if (ev === 'exit') {
            ret = this.emit('afterExit', code, signal) || ret;
        }
        return ret;
    }
}
class SignalExitBase {
}
const signalExitWrap = (handler) => {
    return {
        onExit(cb, opts) {
            return handler.onExit(cb, opts);
        },
        load() {
            return handler.load();
        },
        unload() {
            return handler.unload();
        },
    };
};
class SignalExitFallback extends SignalExitBase {
    onExit() {
        return () => { };
    }
    load() { }
    unload() { }
}
class SignalExit extends SignalExitBase {
    // "SIGHUP" throws an `ENOSYS` error on Windows,
    // so use a supported signal instead
    /* c8 ignore start */
    #hupSig = mjs_process.platform === 'win32' ? 'SIGINT' : 'SIGHUP';
    /* c8 ignore stop */
    #emitter = new Emitter();
    #process;
    #originalProcessEmit;
    #originalProcessReallyExit;
    #sigListeners = {};
    #loaded = false;
    constructor(process) {
        super();
        this.#process = process;
        // { <signal>: <listener fn>, ... }
        this.#sigListeners = {};
        for (const sig of signals) {
            this.#sigListeners[sig] = () => {
                // If there are no other listeners, an exit is coming!
                // Simplest way: remove us and then re-send the signal.
                // We know that this will kill the process, so we can
                // safely emit now.
                const listeners = this.#process.listeners(sig);
                let { count } = this.#emitter;
                // This is a workaround for the fact that signal-exit v3 and signal
                // exit v4 are not aware of each other, and each will attempt to let
                // the other handle it, so neither of them do. To correct this, we
                // detect if we're the only handler *except* for previous versions
                // of signal-exit, and increment by the count of listeners it has
                // created.
                /* c8 ignore start */
                const p = process;
                if (typeof p.__signal_exit_emitter__ === 'object' &&
                    typeof p.__signal_exit_emitter__.count === 'number') {
                    count += p.__signal_exit_emitter__.count;
                }
                /* c8 ignore stop */
                if (listeners.length === count) {
                    this.unload();
                    const ret = this.#emitter.emit('exit', null, sig);
                    /* c8 ignore start */
                    const s = sig === 'SIGHUP' ? this.#hupSig : sig;
                    if (!ret)
                        process.kill(process.pid, s);
                    /* c8 ignore stop */
                }
            };
        }
        this.#originalProcessReallyExit = process.reallyExit;
        this.#originalProcessEmit = process.emit;
    }
    onExit(cb, opts) {
        /* c8 ignore start */
        if (!processOk(this.#process)) {
            return () => { };
        }
        /* c8 ignore stop */
        if (this.#loaded === false) {
            this.load();
        }
        const ev = opts?.alwaysLast ? 'afterExit' : 'exit';
        this.#emitter.on(ev, cb);
        return () => {
            this.#emitter.removeListener(ev, cb);
            if (this.#emitter.listeners['exit'].length === 0 &&
                this.#emitter.listeners['afterExit'].length === 0) {
                this.unload();
            }
        };
    }
    load() {
        if (this.#loaded) {
            return;
        }
        this.#loaded = true;
        // This is the number of onSignalExit's that are in play.
        // It's important so that we can count the correct number of
        // listeners on signals, and don't wait for the other one to
        // handle it instead of us.
        this.#emitter.count += 1;
        for (const sig of signals) {
            try {
                const fn = this.#sigListeners[sig];
                if (fn)
                    this.#process.on(sig, fn);
            }
            catch (_) { }
        }
        this.#process.emit = (ev, ...a) => {
            return this.#processEmit(ev, ...a);
        };
        this.#process.reallyExit = (code) => {
            return this.#processReallyExit(code);
        };
    }
    unload() {
        if (!this.#loaded) {
            return;
        }
        this.#loaded = false;
        signals.forEach(sig => {
            const listener = this.#sigListeners[sig];
            /* c8 ignore start */
            if (!listener) {
                throw new Error('Listener not defined for signal: ' + sig);
            }
            /* c8 ignore stop */
            try {
                this.#process.removeListener(sig, listener);
                /* c8 ignore start */
            }
            catch (_) { }
            /* c8 ignore stop */
        });
        this.#process.emit = this.#originalProcessEmit;
        this.#process.reallyExit = this.#originalProcessReallyExit;
        this.#emitter.count -= 1;
    }
    #processReallyExit(code) {
        /* c8 ignore start */
        if (!processOk(this.#process)) {
            return 0;
        }
        this.#process.exitCode = code || 0;
        /* c8 ignore stop */
        this.#emitter.emit('exit', this.#process.exitCode, null);
        return this.#originalProcessReallyExit.call(this.#process, this.#process.exitCode);
    }
    #processEmit(ev, ...args) {
        const og = this.#originalProcessEmit;
        if (ev === 'exit' && processOk(this.#process)) {
            if (typeof args[0] === 'number') {
                this.#process.exitCode = args[0];
                /* c8 ignore start */
            }
            /* c8 ignore start */
            const ret = og.call(this.#process, ev, ...args);
            /* c8 ignore start */
            this.#emitter.emit('exit', this.#process.exitCode, null);
            /* c8 ignore stop */
            return ret;
        }
        else {
            return og.call(this.#process, ev, ...args);
        }
    }
}
const mjs_process = globalThis.process;
// wrap so that we call the method on the actual handler, without
// exporting it directly.
const { 
/**
 * Called when the process is exiting, whether via signal, explicit
 * exit, or running out of stuff to do.
 *
 * If the global process object is not suitable for instrumentation,
 * then this will be a no-op.
 *
 * Returns a function that may be used to unload signal-exit.
 */
onExit, 
/**
 * Load the listeners.  Likely you never need to call this, unless
 * doing a rather deep integration with signal-exit functionality.
 * Mostly exposed for the benefit of testing.
 *
 * @internal
 */
load, 
/**
 * Unload the listeners.  Likely you never need to call this, unless
 * doing a rather deep integration with signal-exit functionality.
 * Mostly exposed for the benefit of testing.
 *
 * @internal
 */
unload, } = signalExitWrap(processOk(mjs_process) ? new SignalExit(mjs_process) : new SignalExitFallback());
//# sourceMappingURL=index.js.map
;// CONCATENATED MODULE: ./node_modules/execa/lib/terminate/cleanup.js



// If the `cleanup` option is used, call `subprocess.kill()` when the parent process exits
const cleanupOnExit = (kill, {cleanup, detached}, {signal}) => {
	if (!cleanup || detached) {
		return;
	}

	const removeExitHandler = onExit(() => {
		kill();
	});
	(0,external_node_events_namespaceObject.addAbortListener)(signal, () => {
		removeExitHandler();
	});
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/convert/concurrent.js


// When using multiple `.readable()`/`.writable()`/`.duplex()`, `final` and `destroy` should wait for other streams
const initializeConcurrentStreams = () => ({
	readableDestroy: new WeakMap(),
	writableFinal: new WeakMap(),
	writableDestroy: new WeakMap(),
});

// Each file descriptor + `waitName` has its own array of promises.
// Each promise is a single `.readable()`/`.writable()`/`.duplex()` call.
const addConcurrentStream = (concurrentStreams, stream, waitName) => {
	const weakMap = concurrentStreams[waitName];
	if (!weakMap.has(stream)) {
		weakMap.set(stream, []);
	}

	const promises = weakMap.get(stream);
	const promise = createDeferred();
	promises.push(promise);
	const resolve = promise.resolve.bind(promise);
	return {resolve, promises};
};

// Wait for other streams, but stop waiting when subprocess ends
const waitForConcurrentStreams = async ({resolve, promises}, subprocess) => {
	resolve();
	const [isSubprocessExit] = await Promise.race([
		Promise.allSettled([true, subprocess]),
		Promise.all([false, ...promises]),
	]);
	return !isSubprocessExit;
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/io/iterate.js






// Iterate over lines of `subprocess.stdout`, used by `subprocess.readable|duplex|iterable()`
const iterateOnSubprocessStream = ({subprocessStdout, subprocess, binary, shouldEncode, encoding, preserveNewlines}) => {
	const controller = new AbortController();
	stopReadingOnExit(subprocess, controller);
	return iterateOnStream({
		stream: subprocessStdout,
		controller,
		binary,
		shouldEncode: !subprocessStdout.readableObjectMode && shouldEncode,
		encoding,
		shouldSplit: !subprocessStdout.readableObjectMode,
		preserveNewlines,
	});
};

const stopReadingOnExit = async (subprocess, controller) => {
	try {
		await subprocess;
	} catch {} finally {
		controller.abort();
	}
};

// Iterate over lines of `subprocess.stdout`, used by `result.stdout` and the `verbose: 'full'` option.
// Applies the `lines` and `encoding` options.
const iterateForResult = ({stream, onStreamEnd, lines, encoding, stripFinalNewline, allMixed}) => {
	const controller = new AbortController();
	stopReadingOnStreamEnd(onStreamEnd, controller, stream);
	const objectMode = stream.readableObjectMode && !allMixed;
	return iterateOnStream({
		stream,
		controller,
		binary: encoding === 'buffer',
		shouldEncode: !objectMode,
		encoding,
		shouldSplit: !objectMode && lines,
		preserveNewlines: !stripFinalNewline,
	});
};

const stopReadingOnStreamEnd = async (onStreamEnd, controller, stream) => {
	try {
		await onStreamEnd;
	} catch {
		stream.destroy();
	} finally {
		controller.abort();
	}
};

const iterateOnStream = ({stream, controller, binary, shouldEncode, encoding, shouldSplit, preserveNewlines}) => {
	const onStdoutChunk = (0,external_node_events_namespaceObject.on)(stream, 'data', {
		signal: controller.signal,
		highWaterMark: HIGH_WATER_MARK,
		// Backward compatibility with older name for this option
		// See https://github.com/nodejs/node/pull/52080#discussion_r1525227861
		// @todo Remove after removing support for Node 21
		highWatermark: HIGH_WATER_MARK,
	});
	return iterateOnData({
		onStdoutChunk,
		controller,
		binary,
		shouldEncode,
		encoding,
		shouldSplit,
		preserveNewlines,
	});
};

const DEFAULT_OBJECT_HIGH_WATER_MARK = (0,external_node_stream_namespaceObject.getDefaultHighWaterMark)(true);

// The `highWaterMark` of `events.on()` is measured in number of events, not in bytes.
// Not knowing the average amount of bytes per `data` event, we use the same heuristic as streams in objectMode, since they have the same issue.
// Therefore, we use the value of `getDefaultHighWaterMark(true)`.
// Note: this option does not exist on Node 18, but this is ok since the logic works without it. It just consumes more memory.
const HIGH_WATER_MARK = DEFAULT_OBJECT_HIGH_WATER_MARK;

const iterateOnData = async function * ({onStdoutChunk, controller, binary, shouldEncode, encoding, shouldSplit, preserveNewlines}) {
	const generators = getGenerators({
		binary,
		shouldEncode,
		encoding,
		shouldSplit,
		preserveNewlines,
	});

	try {
		for await (const [chunk] of onStdoutChunk) {
			yield * transformChunkSync(chunk, generators, 0);
		}
	} catch (error) {
		if (!controller.signal.aborted) {
			throw error;
		}
	} finally {
		yield * finalChunksSync(generators);
	}
};

const getGenerators = ({binary, shouldEncode, encoding, shouldSplit, preserveNewlines}) => [
	getEncodingTransformGenerator(binary, encoding, !shouldEncode),
	getSplitLinesGenerator(binary, preserveNewlines, !shouldSplit, {}),
].filter(Boolean);

;// CONCATENATED MODULE: ./node_modules/execa/lib/convert/iterable.js





// Convert the subprocess to an async iterable
const createIterable = (subprocess, encoding, options) => {
	const {from, binary: binaryOption = false, preserveNewlines = false} = copyOptions(options);
	checkBooleanOption(binaryOption, 'binary');
	checkBooleanOption(preserveNewlines, 'preserveNewlines');
	const binary = binaryOption || BINARY_ENCODINGS.has(encoding);
	const subprocessStdout = getFromStream(subprocess, from);
	const onStdoutData = iterateOnSubprocessStream({
		subprocessStdout,
		subprocess,
		binary,
		shouldEncode: true,
		encoding,
		preserveNewlines,
	});
	return iterateOnStdoutData(onStdoutData, subprocessStdout, subprocess);
};

const iterateOnStdoutData = async function * (onStdoutData, subprocessStdout, subprocess) {
	try {
		yield * onStdoutData;
	} finally {
		if (subprocessStdout.readable) {
			subprocessStdout.destroy();
		}

		await subprocess;
	}
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/resolve/wait-stream.js


// Wraps `finished(stream)` to handle the following case:
//  - When the subprocess exits, Node.js automatically calls `subprocess.stdin.destroy()`, which we need to ignore.
//  - However, we still need to throw if `subprocess.stdin.destroy()` is called before subprocess exit.
const waitForStream = async (stream, fdNumber, streamInfo, {
	isSameDirection,
	stopOnExit = false,
	readable = true,
	writable = true,
} = {}) => {
	const state = handleStdinDestroy(stream, streamInfo);
	const abortController = new AbortController();
	try {
		await Promise.race([
			...(stopOnExit ? [streamInfo.exitPromise] : []),
			(0,external_node_stream_promises_namespaceObject.finished)(stream, {
				cleanup: true,
				signal: abortController.signal,
				readable,
				writable,
			}),
		]);
	} catch (error) {
		if (!state.stdinCleanedUp && !isInputTransformAbort(stream, fdNumber, streamInfo, error)) {
			handleStreamError(error, fdNumber, streamInfo, isSameDirection);
		}
	} finally {
		abortController.abort();
	}
};

// If `subprocess.stdin` is destroyed before being fully written to, it is considered aborted and should throw an error.
// This can happen for example when user called `subprocess.stdin.destroy()` before `subprocess.stdin.end()`.
// However, Node.js calls `subprocess.stdin.destroy()` on exit for cleanup purposes.
// https://github.com/nodejs/node/blob/0b4cdb4b42956cbd7019058e409e06700a199e11/lib/internal/child_process.js#L278
// This is normal and should not throw an error.
// Therefore, we need to differentiate between both situations to know whether to throw an error.
// Unfortunately, events (`close`, `error`, `end`, `exit`) cannot be used because `.destroy()` can take an arbitrary amount of time.
// For example, `stdin: 'pipe'` is implemented as a TCP socket, and its `.destroy()` method waits for TCP disconnection.
// Therefore `.destroy()` might end before or after subprocess exit, based on OS speed and load.
// The only way to detect this is to spy on `subprocess.stdin._destroy()` by wrapping it.
// If `subprocess.exitCode` or `subprocess.signalCode` is set, it means `.destroy()` is being called by Node.js itself.
// With an input transform, `subprocess.stdin` is that transform, so Node.js destroys it instead of the original `stdin`.
const handleStdinDestroy = (stream, {originalStreams, subprocess}) => {
	const [originalStdin] = originalStreams;
	const state = {stdinCleanedUp: false};
	if (stream === originalStdin || stream === subprocess.stdin) {
		spyOnStdinDestroy(stream, subprocess, state);
	}

	return state;
};

const spyOnStdinDestroy = (subprocessStdin, subprocess, state) => {
	const {_destroy} = subprocessStdin;
	subprocessStdin._destroy = (...destroyArguments) => {
		setStdinCleanedUp(subprocess, state);
		_destroy.call(subprocessStdin, ...destroyArguments);
	};
};

const setStdinCleanedUp = ({exitCode, signalCode}, state) => {
	if (exitCode !== null || signalCode !== null) {
		state.stdinCleanedUp = true;
	}
};

// An input transform writes to the subprocess' original stream. When that stream is closed first, e.g. when the subprocess exits without reading its input, the transform is aborted.
// Like `EPIPE` with `stdin: 'pipe'`, this is not an error.
// When the transform is aborted by the user instead, the original stream is still open at that point.
const isInputTransformAbort = (stream, fdNumber, streamInfo, error) => {
	const originalStream = streamInfo.originalStreams[fdNumber];
	return stream !== originalStream
		&& isInputFileDescriptor(streamInfo, fdNumber)
		&& originalStream?.destroyed === true
		// A `TransformStream` is aborted with an `AbortError`
		&& (isStreamAbort(error) || error?.code === 'ABORT_ERR');
};

// We ignore EPIPEs on writable streams and aborts on readable streams since those can happen normally.
// When one stream errors, the error is propagated to the other streams on the same file descriptor.
// Those other streams might have a different direction due to the above.
// When this happens, the direction of both the initial stream and the others should then be taken into account.
// Therefore, we keep track of whether a stream error is currently propagating.
const handleStreamError = (error, fdNumber, streamInfo, isSameDirection) => {
	if (!shouldIgnoreStreamError(error, fdNumber, streamInfo, isSameDirection)) {
		throw error;
	}
};

const shouldIgnoreStreamError = (error, fdNumber, streamInfo, isSameDirection = true) => {
	if (streamInfo.propagating) {
		return isStreamEpipe(error) || isStreamAbort(error);
	}

	streamInfo.propagating = true;
	return isInputFileDescriptor(streamInfo, fdNumber) === isSameDirection
		? isStreamEpipe(error)
		: isStreamAbort(error);
};

// Unfortunately, we cannot use the stream's class or properties to know whether it is readable or writable.
// For example, `subprocess.stdin` is technically a Duplex, but can only be used as a writable.
// Therefore, we need to use the file descriptor's direction (`stdin` is input, `stdout` is output, etc.).
// However, while `subprocess.std*` and transforms follow that direction, any stream passed the `std*` option has the opposite direction.
// For example, `subprocess.stdin` is a writable, but the `stdin` option is a readable.
const isInputFileDescriptor = ({fileDescriptors}, fdNumber) => fdNumber !== 'all' && fileDescriptors[fdNumber].direction === 'input';

// When `stream.destroy()` is called without an `error` argument, stream is aborted.
// This is the only way to abort a readable stream, which can be useful in some instances.
// Therefore, we ignore this error on readable streams.
// Breaking out of `for await (const chunk of subprocess.stdout)` aborts it with an `AbortError` instead. However, that error cannot be told apart from an `AbortError` thrown by a transform, which must make the subprocess fail. So this is not supported, and `subprocess.readable()` or `subprocess.iterable()` should be used instead.
const isStreamAbort = error => error?.code === 'ERR_STREAM_PREMATURE_CLOSE';

// When `stream.write()` is called but the underlying source has been closed, `EPIPE` is emitted.
// When piping subprocesses, the source subprocess usually decides when to stop piping.
// However, there are some instances when the destination does instead, such as `... | head -n1`.
// It notifies the source by using `EPIPE`.
// Therefore, we ignore this error on writable streams.
const isStreamEpipe = error => error?.code === 'EPIPE';

;// CONCATENATED MODULE: ./node_modules/execa/lib/convert/shared.js



const safeWaitForSubprocessStdin = async subprocessStdin => {
	if (subprocessStdin === undefined) {
		return;
	}

	try {
		await waitForSubprocessStdin(subprocessStdin);
	} catch {}
};

const safeWaitForSubprocessStdout = async subprocessStdout => {
	if (subprocessStdout === undefined) {
		return;
	}

	try {
		await waitForSubprocessStdout(subprocessStdout);
	} catch {}
};

const waitForSubprocessStdin = async subprocessStdin => {
	await (0,external_node_stream_promises_namespaceObject.finished)(subprocessStdin, {cleanup: true, readable: false, writable: true});
};

const waitForSubprocessStdout = async subprocessStdout => {
	await (0,external_node_stream_promises_namespaceObject.finished)(subprocessStdout, {cleanup: true, readable: true, writable: false});
};

// When `readable` or `writable` aborts/errors, the caller awaits the subprocess, for the reason mentioned above.
// Then, the error passed to `stream.destroy(error)` is emitted, including when the subprocess has already ended.
const throwDestroyError = error => {
	if (error) {
		throw error;
	}
};

const destroyOtherStream = (stream, isOpen, error) => {
	if (error && !isStreamAbort(error)) {
		stream.destroy(error);
	} else if (isOpen) {
		stream.destroy();
	}
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/convert/readable.js










// Create a `Readable` stream that forwards from `stdout` and awaits the subprocess
const createReadable = ({subprocess, concurrentStreams, encoding}, options) => {
	const {from, binary: binaryOption = true, preserveNewlines = true} = copyOptions(options);
	checkBooleanOption(binaryOption, 'binary');
	checkBooleanOption(preserveNewlines, 'preserveNewlines');
	const binary = binaryOption || BINARY_ENCODINGS.has(encoding);
	// Retrieve `stdout` (or other stream depending on `from`)
	const subprocessStdout = getFromStream(subprocess, from);
	const waitReadableDestroy = addConcurrentStream(concurrentStreams, subprocessStdout, 'readableDestroy');
	const {readableEncoding, readableObjectMode, readableHighWaterMark} = getReadableOptions(subprocessStdout, binary);
	const {read, onStdoutDataDone} = getReadableMethods({
		subprocessStdout,
		subprocess,
		binary,
		encoding,
		preserveNewlines,
	});
	const readable = new external_node_stream_namespaceObject.Readable({
		read,
		destroy: (0,external_node_util_namespaceObject.callbackify)(onReadableDestroy.bind(undefined, {subprocessStdout, subprocess, waitReadableDestroy})),
		highWaterMark: readableHighWaterMark,
		objectMode: readableObjectMode,
		encoding: readableEncoding,
	});
	onStdoutFinished({
		subprocessStdout,
		onStdoutDataDone,
		readable,
		subprocess,
	});
	return readable;
};

const getReadableOptions = ({readableEncoding, readableObjectMode, readableHighWaterMark}, binary) => binary
	? {readableEncoding, readableObjectMode, readableHighWaterMark}
	: {readableEncoding, readableObjectMode: true, readableHighWaterMark: DEFAULT_OBJECT_HIGH_WATER_MARK};

const getReadableMethods = ({subprocessStdout, subprocess, binary, encoding, preserveNewlines}) => {
	const onStdoutDataDone = createDeferred();
	const onStdoutData = iterateOnSubprocessStream({
		subprocessStdout,
		subprocess,
		binary,
		shouldEncode: !binary,
		encoding,
		preserveNewlines,
	});

	return {
		read() {
			onRead(this, onStdoutData, onStdoutDataDone);
		},
		onStdoutDataDone,
	};
};

// Forwards data from `stdout` to `readable`
const onRead = async (readable, onStdoutData, onStdoutDataDone) => {
	try {
		const {value, done} = await onStdoutData.next();
		if (done) {
			onStdoutDataDone.resolve();
		} else {
			readable.push(value);
		}
	} catch {}
};

// When `subprocess.stdout` ends/aborts/errors, do the same on `readable`.
// Await the subprocess, for the same reason as above.
const onStdoutFinished = async ({subprocessStdout, onStdoutDataDone, readable, subprocess, subprocessStdin}) => {
	try {
		await waitForSubprocessStdout(subprocessStdout);
		await subprocess;
		await safeWaitForSubprocessStdin(subprocessStdin);
		await onStdoutDataDone;

		if (readable.readable) {
			readable.push(null);
		}
	} catch (error) {
		await safeWaitForSubprocessStdin(subprocessStdin);
		destroyOtherReadable(readable, await getPrematureCloseError(subprocess, error));
	}
};

const getPrematureCloseError = async (subprocess, error) => {
	if (error.code !== 'ERR_STREAM_PREMATURE_CLOSE') {
		return error;
	}

	try {
		await subprocess;
	} catch (subprocessError) {
		return subprocessError;
	}

	return error;
};

// When `readable` aborts/errors, do the same on `subprocess.stdout`
const onReadableDestroy = async ({subprocessStdout, subprocess, waitReadableDestroy}, error) => {
	if (await waitForConcurrentStreams(waitReadableDestroy, subprocess)) {
		// Breaking out of `for await (const chunk of readable)` or cancelling `subprocess.readableStream()` destroys `readable` with an `AbortError`. Like `readable.destroy()`, this aborts `subprocess.stdout` instead of making it fail.
		destroyOtherReadable(subprocessStdout, error?.code === 'ABORT_ERR' ? undefined : error);
		await subprocess;
	}

	throwDestroyError(error);
};

const destroyOtherReadable = (stream, error) => {
	destroyOtherStream(stream, stream.readable, error);
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/convert/web.js


// Web stream versions of `subprocess.readable()`, `subprocess.writable()` and `subprocess.duplex()`.
// They wrap those methods with `.toWeb()`, so all error and abort handling is reused as is.
const createReadableStream = (subprocess, readableOptions) => external_node_stream_namespaceObject.Readable.toWeb(subprocess.readable(readableOptions));
const createWritableStream = (subprocess, writableOptions) => external_node_stream_namespaceObject.Writable.toWeb(subprocess.writable(writableOptions));
const createTransformStream = (subprocess, duplexOptions) => external_node_stream_namespaceObject.Duplex.toWeb(subprocess.duplex(duplexOptions));

;// CONCATENATED MODULE: ./node_modules/execa/lib/pipe/pipe-arguments.js







// Normalize and validate arguments passed to `source.pipe(destination)`
const normalizePipeArguments = ({source, sourcePromise, boundOptions, createNested}, ...pipeArguments) => {
	const startTime = getStartTime();
	const {
		destination,
		destinationStream,
		destinationError,
		from,
		unpipeSignal,
	} = getDestinationStream(boundOptions, createNested, pipeArguments);
	const {sourceStream, sourceError} = getSourceStream(source, from);
	const {options: sourceOptions, fileDescriptors} = SUBPROCESS_OPTIONS.get(source);
	return {
		source,
		sourcePromise,
		sourceStream,
		sourceOptions,
		sourceError,
		destination,
		destinationStream,
		destinationError,
		unpipeSignal,
		fileDescriptors,
		startTime,
	};
};

const getDestinationStream = (boundOptions, createNested, pipeArguments) => {
	let destinationInfo;

	try {
		destinationInfo = getDestination(boundOptions, createNested, ...pipeArguments);
	} catch (error) {
		return {destinationError: error};
	}

	const {destination, pipeOptions} = destinationInfo;

	try {
		const {from, to, unpipeSignal} = copyOptions(pipeOptions);
		validateAbortSignal(unpipeSignal, 'unpipeSignal');
		const destinationStream = getToStream(destination, to);
		return {
			destination,
			destinationStream,
			from,
			unpipeSignal,
		};
	} catch (error) {
		abortDestination(destination, pipeArguments[0]);
		return {destinationError: error};
	}
};

/*
The destination has already been spawned at that point, since the `to` option is validated afterwards.
When Execa spawned it, nothing else can end it, so it is terminated. Otherwise, it would keep running, e.g. waiting for its `stdin` forever, which also prevents the current process from exiting. A destination passed by the user is left to them.
In both cases, its error must be handled, otherwise it becomes an unhandled rejection which crashes the current process, e.g. with `source.pipe(execa('command'), {to: 'fd9'})`. This does not prevent the user from awaiting it.
*/
const abortDestination = (destination, firstArgument) => {
	if (destination !== firstArgument) {
		destination.kill();
	}

	destination.catch(() => {});
};

// Piping subprocesses can use three syntaxes:
//  - source.pipe('command', commandArguments, pipeOptionsOrDestinationOptions)
//  - source.pipe`command commandArgument` or source.pipe(pipeOptionsOrDestinationOptions)`command commandArgument`
//  - source.pipe(execa(...), pipeOptions)
const getDestination = (boundOptions, createNested, firstArgument, ...pipeArguments) => {
	if (Array.isArray(firstArgument)) {
		const destination = createNested(mapDestinationArguments, boundOptions)(firstArgument, ...pipeArguments);
		return {destination, pipeOptions: boundOptions};
	}

	if (typeof firstArgument === 'string' || firstArgument instanceof URL || isDenoExecPath(firstArgument)) {
		if (Object.keys(boundOptions).length > 0) {
			throw new TypeError('Please use .pipe("file", ..., options) or .pipe(execa("file", ..., options)) instead of .pipe(options)("file", ...).');
		}

		const [rawFile, rawArguments, rawOptions] = normalizeParameters(firstArgument, ...pipeArguments);
		const destination = createNested(mapDestinationArguments)(rawFile, rawArguments, rawOptions);
		return {destination, pipeOptions: rawOptions};
	}

	if (SUBPROCESS_OPTIONS.has(firstArgument)) {
		if (Object.keys(boundOptions).length > 0) {
			throw new TypeError('Please use .pipe(options)`command` or .pipe($(options)`command`) instead of .pipe(options)($`command`).');
		}

		return {destination: firstArgument, pipeOptions: pipeArguments[0]};
	}

	throw new TypeError(`The first argument must be a template string, an options object, or an Execa subprocess: ${firstArgument}`);
};

// Force `stdin: 'pipe'` with the destination subprocess
const mapDestinationArguments = ({options}) => ({
	options: {
		__proto__: null,
		...options,
		// Piping writes to the destination's `stdin`, which is forced even if the user set another value.
		// However, `stdin` cannot be combined with `stdio`, which is needed for `to: 'fd3'` and higher.
		...((options.stdio === undefined) && {stdin: 'pipe'}),
		piped: true,
	},
});

const getSourceStream = (source, from) => {
	try {
		const sourceStream = getFromStream(source, from);
		return {sourceStream};
	} catch (error) {
		return {sourceError: error};
	}
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/pipe/throw.js



// When passing invalid arguments to `source.pipe()`, throw asynchronously.
// We also abort both subprocesses.
const handlePipeArgumentsError = ({
	sourceStream,
	sourceError,
	destinationStream,
	destinationError,
	fileDescriptors,
	sourceOptions,
	startTime,
}) => {
	const error = getPipeArgumentsError({
		sourceStream,
		sourceError,
		destinationStream,
		destinationError,
	});
	if (error !== undefined) {
		throw createNonCommandError({
			error,
			fileDescriptors,
			sourceOptions,
			startTime,
		});
	}
};

const getPipeArgumentsError = ({sourceStream, sourceError, destinationStream, destinationError}) => {
	if (sourceError !== undefined && destinationError !== undefined) {
		return destinationError;
	}

	if (destinationError !== undefined) {
		abortSourceStream(sourceStream);
		return destinationError;
	}

	if (sourceError === undefined) {
		return;
	}

	endDestinationStream(destinationStream);
	return sourceError;
};

// Specific error return value when passing invalid arguments to `subprocess.pipe()` or when using `unpipeSignal`
const createNonCommandError = ({error, fileDescriptors, sourceOptions, startTime}) => makeEarlyError({
	error,
	command: PIPE_COMMAND_MESSAGE,
	escapedCommand: PIPE_COMMAND_MESSAGE,
	fileDescriptors,
	options: sourceOptions,
	startTime,
	isSync: false,
});

const PIPE_COMMAND_MESSAGE = 'source.pipe(destination)';

;// CONCATENATED MODULE: ./node_modules/execa/lib/pipe/sequence.js
// Like Bash, we await both subprocesses. This is unlike some other shells which only await the destination subprocess.
// Like Bash with the `pipefail` option, if either subprocess fails, the whole pipe fails.
// Like Bash, if both subprocesses fail, we return the failure of the destination.
// This ensures both subprocesses' errors are present, using `error.pipedFrom`.
const waitForBothSubprocesses = async subprocessPromises => {
	const [
		{status: sourceStatus, reason: sourceReason, value: sourceResult = sourceReason},
		{status: destinationStatus, reason: destinationReason, value: destinationResult = destinationReason},
		{reason: pipedFromReason, value: pipedFromResult = pipedFromReason},
	] = await subprocessPromises;

	if (!destinationResult.pipedFrom.includes(pipedFromResult)) {
		destinationResult.pipedFrom.push(pipedFromResult);
	}

	if (destinationStatus === 'rejected') {
		throw destinationResult;
	}

	if (sourceStatus === 'rejected') {
		throw sourceResult;
	}

	return destinationResult;
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/pipe/streaming.js





// The piping behavior is like Bash.
// In particular, when one subprocess exits, the other is not terminated by a signal.
// Instead, its stdout (for the source) or stdin (for the destination) closes.
// If the subprocess uses it, it will make it error with SIGPIPE or EPIPE (for the source) or end (for the destination).
// If it does not use it, it will continue running.
// This allows for subprocesses to gracefully exit and lower the coupling between subprocesses.
const pipeSubprocessStream = (sourceStream, destinationStream, maxListenersController) => {
	const mergedStream = MERGED_STREAMS.has(destinationStream)
		? pipeMoreSubprocessStream(sourceStream, destinationStream)
		: pipeFirstSubprocessStream(sourceStream, destinationStream);
	incrementMaxListeners(sourceStream, SOURCE_LISTENERS_PER_PIPE, maxListenersController.signal);
	incrementMaxListeners(destinationStream, DESTINATION_LISTENERS_PER_PIPE, maxListenersController.signal);
	cleanupMergedStreamsMap(destinationStream);
	return mergedStream;
};

// We use `merge-streams` to allow for multiple sources to pipe to the same destination.
const pipeFirstSubprocessStream = (sourceStream, destinationStream) => {
	const mergedStream = mergeStreams([sourceStream]);
	addMergeSource(mergedStream, sourceStream);
	pipeStreams(mergedStream, destinationStream, () => unpipeSourcesOnDestinationEnd(mergedStream));
	MERGED_STREAMS.set(destinationStream, mergedStream);
	return mergedStream;
};

const pipeMoreSubprocessStream = (sourceStream, destinationStream) => {
	const mergedStream = MERGED_STREAMS.get(destinationStream);
	mergedStream.add(sourceStream);
	addMergeSource(mergedStream, sourceStream);
	return mergedStream;
};

/*
One source stream can be piped to multiple destinations, e.g. `subprocess.pipe(first)` and `subprocess.pipe(second)`.
When a destination ends, its source must only be aborted when it is its last destination, so the other destinations keep receiving data.
Sources with several destinations are then only removed from the ended destination's merge stream, instead of being aborted.
This also holds when a source has been piped to one destination and unpiped from another one.
*/
const MERGE_SOURCES = new WeakMap();
const SOURCE_MERGES = new WeakMap();

const addMergeSource = (mergedStream, sourceStream) => {
	addToSetMap(MERGE_SOURCES, mergedStream, sourceStream);
	addToSetMap(SOURCE_MERGES, sourceStream, mergedStream);
};

const addToSetMap = (map, key, value) => {
	if (!map.has(key)) {
		map.set(key, new Set());
	}

	map.get(key).add(value);
};

// Stop piping a source into a destination, e.g. with the `unpipeSignal` option
const unpipeSubprocessStream = async (mergedStream, sourceStream) => {
	MERGE_SOURCES.get(mergedStream)?.delete(sourceStream);
	SOURCE_MERGES.get(sourceStream)?.delete(mergedStream);
	await mergedStream.remove(sourceStream);
};

const unpipeSourcesOnDestinationEnd = async mergedStream => {
	for (const sourceStream of MERGE_SOURCES.get(mergedStream)) {
		const mergedStreams = SOURCE_MERGES.get(sourceStream);
		mergedStreams.delete(mergedStream);
		if (mergedStreams.size > 0) {
			// Other destinations still need that source, so it must not be aborted
			// eslint-disable-next-line no-await-in-loop
			await mergedStream.remove(sourceStream);
		}
	}
};

const cleanupMergedStreamsMap = async destinationStream => {
	try {
		await (0,external_node_stream_promises_namespaceObject.finished)(destinationStream, {cleanup: true, readable: false, writable: true});
	} catch {}

	MERGED_STREAMS.delete(destinationStream);
};

const MERGED_STREAMS = new WeakMap();

// Number of listeners set up on `sourceStream` by each `sourceStream.pipe(destinationStream)`
// Those are added by `merge-streams`
const SOURCE_LISTENERS_PER_PIPE = 2;
// Number of listeners set up on `destinationStream` by each `sourceStream.pipe(destinationStream)`
// Those are added by `finished()` in `cleanupMergedStreamsMap()`
const DESTINATION_LISTENERS_PER_PIPE = 1;

;// CONCATENATED MODULE: ./node_modules/execa/lib/pipe/abort.js




// When passing an `unpipeSignal` option, abort piping when the signal is aborted.
// However, do not terminate the subprocesses.
const unpipeOnAbort = (unpipeSignal, unpipeContext) => unpipeSignal === undefined
	? []
	: [unpipeOnSignalAbort(unpipeSignal, unpipeContext)];

const unpipeOnSignalAbort = async (unpipeSignal, {sourceStream, mergedStream, fileDescriptors, sourceOptions, startTime}) => {
	await (0,external_node_util_namespaceObject.aborted)(unpipeSignal, sourceStream);
	await unpipeSubprocessStream(mergedStream, sourceStream);
	const error = new Error('Pipe canceled by `unpipeSignal` option.');
	throw createNonCommandError({
		error,
		fileDescriptors,
		sourceOptions,
		startTime,
	});
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/pipe/setup.js














// Pipe a subprocess' `stdout`/`stderr`/`stdio` into another subprocess' `stdin`
const pipeToSubprocess = (sourceInfo, ...pipeArguments) => {
	if (isPlainObject(pipeArguments[0])) {
		return pipeToSubprocess.bind(undefined, {
			...sourceInfo,
			boundOptions: {...sourceInfo.boundOptions, ...pipeArguments[0]},
		});
	}

	// The previous `.pipe()` failed because of its arguments, so there is no source. Its promise rejects with that error.
	// The destination is not spawned, since nothing would end its `stdin`.
	if (sourceInfo.source === undefined) {
		return sourceInfo.sourcePromise;
	}

	const {destination, ...normalizedInfo} = normalizePipeArguments(sourceInfo, ...pipeArguments);
	const pipeFailureController = new AbortController();
	const promise = handlePipePromise({...normalizedInfo, destination, pipeFailureController});
	promise.pipe = pipeToSubprocess.bind(undefined, {
		...sourceInfo,
		source: destination,
		sourcePromise: promise,
		boundOptions: {},
	});
	forwardDestinationMethods(promise, destination, pipeFailureController.signal);
	return promise;
};

/*
The return value of `.pipe()` exposes the destination subprocess' output, but its iteration and stream conversion methods must await the whole pipe so source failures are propagated too. The destination is `undefined` when `.pipe()` was passed invalid arguments, in which case the promise rejects and there is nothing to forward.
*/
const forwardDestinationMethods = (promise, destination, pipeFailureSignal) => {
	if (destination === undefined) {
		return;
	}

	forwardReadableMethods(promise, destination);
	forwardIpcMethods(promise, destination, pipeFailureSignal);
};

const forwardReadableMethods = (promise, destination) => {
	const subprocessOptions = SUBPROCESS_OPTIONS.get(destination);
	SUBPROCESS_OPTIONS.set(promise, subprocessOptions);
	promise.stdio = destination.stdio;
	promise.all = destination.all;

	const {options: {encoding}} = subprocessOptions;
	const concurrentStreams = initializeConcurrentStreams();
	promise[Symbol.asyncIterator] = createIterable.bind(undefined, promise, encoding, {});
	promise.iterable = createIterable.bind(undefined, promise, encoding);
	promise.readable = createPipeReadable.bind(undefined, promise, {
		subprocess: promise,
		concurrentStreams,
		encoding,
	});
	promise.readableStream = createReadableStream.bind(undefined, promise);
	forwardAll(promise, destination);
};

const forwardAll = (promise, destination) => {
	if (destination.all === undefined) {
		promise.all = undefined;
		return;
	}

	Object.defineProperty(promise, 'all', {
		get() {
			setAllProperty(promise, destination.all);
			const all = promise.readable({from: 'all'});
			// Like `subprocess.all`, the pipe's failure is handled by awaiting it, not by listening to the stream's `error` event. Consumers like `text(all)` still fail.
			all.on('error', () => {});
			setAllProperty(promise, all);
			return all;
		},
		enumerable: true,
		configurable: true,
	});
};

const setAllProperty = (promise, value) => {
	Object.defineProperty(promise, 'all', {
		value,
		writable: true,
		enumerable: true,
		configurable: true,
	});
};

const createPipeReadable = (promise, readableOptions, ...arguments_) => {
	const readable = createReadable(readableOptions, ...arguments_);
	destroyOnPipeFailure(promise, readable);
	return readable;
};

const destroyOnPipeFailure = async (promise, readable) => {
	try {
		await promise;
	} catch (error) {
		readable.destroy(error);
	}
};

const forwardIpcMethods = (promise, destination, pipeFailureSignal) => {
	promise.sendMessage = destination.sendMessage;
	promise.getOneMessage = getOnePipeMessage.bind(undefined, destination, pipeFailureSignal);
	promise.getEachMessage = getEachPipeMessage.bind(undefined, promise, destination, pipeFailureSignal);
};

const getOnePipeMessage = (destination, pipeFailureSignal, ...arguments_) => {
	const controller = new AbortController();
	const messagePromise = destination.getOneMessage(...addPipeOptions(arguments_, controller.signal, internalGetOneMessageOptions));
	return waitForOnePipeMessage(pipeFailureSignal, messagePromise, controller);
};

const waitForOnePipeMessage = async (pipeFailureSignal, messagePromise, controller) => {
	try {
		return await Promise.race([messagePromise, getSignalRejection(pipeFailureSignal, controller.signal)]);
	} finally {
		controller.abort();
	}
};

const getSignalRejection = (signal, listenerSignal) => new Promise((_, reject) => {
	if (signal.aborted) {
		reject(signal.reason);
		return;
	}

	signal.addEventListener('abort', () => {
		reject(signal.reason);
	}, {once: true, signal: listenerSignal});
});

const getEachPipeMessage = (promise, destination, pipeFailureSignal, ...arguments_) => {
	const controller = new AbortController();
	// Create the destination iterator before awaiting the pipe so option validation stays synchronous.
	const iterator = destination.getEachMessage(...addPipeOptions(arguments_, controller.signal, internalGetEachMessageOptions));
	abortOnSignal(pipeFailureSignal, controller);
	return iterateOnPipeMessages(promise, iterator, controller);
};

const iterateOnPipeMessages = async function * (promise, iterator, controller) {
	try {
		yield * iterator;
	} finally {
		controller.abort();
		await promise;
	}
};

const addPipeOptions = (arguments_, signal, internalOptionsSymbol) => {
	if (arguments_[0] === null) {
		// Preserve the public validation error from `getEachMessage(null)` instead of masking it with a pipe failure.
		return arguments_;
	}

	const [options] = arguments_;
	// The returned pipe promise is awaited by the forwarded IPC iterator, so the destination IPC iterator must not also await the destination subprocess on close.
	return [{...options, [internalOptionsSymbol]: {signal, shouldAwait: false}}];
};

const abortOnSignal = (signal, controller) => {
	if (signal.aborted) {
		controller.abort();
		return;
	}

	// Interrupt pending IPC reads when the pipe rejects, including `unpipeSignal` cancellation while the destination keeps running.
	signal.addEventListener('abort', () => {
		controller.abort();
	}, {once: true, signal: controller.signal});
};

// `writable()`, `duplex()`, `writableStream()` and `transformStream()` are intentionally not forwarded: they write to the destination's `stdin`, which is already being piped from the source.

// Asynchronous logic when piping subprocesses
const handlePipePromise = async ({
	source,
	sourcePromise,
	sourceStream,
	sourceOptions,
	sourceError,
	destination,
	destinationStream,
	destinationError,
	unpipeSignal,
	fileDescriptors,
	startTime,
	pipeFailureController,
}) => {
	const maxListenersController = new AbortController();
	try {
		const subprocessPromises = getSubprocessPromises(sourcePromise, destination, source);
		handlePipeArgumentsError({
			sourceStream,
			sourceError,
			destinationStream,
			destinationError,
			fileDescriptors,
			sourceOptions,
			startTime,
		});
		const mergedStream = pipeSubprocessStream(sourceStream, destinationStream, maxListenersController);
		return await Promise.race([
			waitForBothSubprocesses(subprocessPromises),
			...unpipeOnAbort(unpipeSignal, {
				sourceStream,
				mergedStream,
				sourceOptions,
				fileDescriptors,
				startTime,
			}),
		]);
	} catch (error) {
		pipeFailureController.abort(error);
		throw error;
	} finally {
		maxListenersController.abort();
	}
};

// `.pipe()` awaits the subprocess promises.
// When invalid arguments are passed to `.pipe()`, we throw an error, which prevents awaiting them.
// We need to ensure this does not create unhandled rejections.
// With `source.pipe(destination).pipe(secondDestination)`, the second `sourcePromise` is the first `.pipe()`, which rejects with the error of either subprocess. However, `secondDestination` is only piped from `destination`.
const getSubprocessPromises = (sourcePromise, destination, source) => Promise.allSettled([sourcePromise, destination, source]);

;// CONCATENATED MODULE: ./node_modules/get-stream/source/utils.js
const utils_identity = value => value;

const utils_noop = () => undefined;

const getContentsProperty = ({contents}) => contents;

const throwObjectStream = chunk => {
	throw new Error(`Streams in object mode are not supported: ${String(chunk)}`);
};

const getLengthProperty = convertedChunk => convertedChunk.length;

;// CONCATENATED MODULE: ./node_modules/get-stream/source/array.js



async function getStreamAsArray(stream, options) {
	return getStreamContents(stream, arrayMethods, options);
}

const initArray = () => ({contents: []});

const increment = () => 1;

const addArrayChunk = (convertedChunk, {contents}) => {
	contents.push(convertedChunk);
	return contents;
};

const arrayMethods = {
	init: initArray,
	convertChunk: {
		string: utils_identity,
		buffer: utils_identity,
		arrayBuffer: utils_identity,
		dataView: utils_identity,
		typedArray: utils_identity,
		others: utils_identity,
	},
	getSize: increment,
	truncateChunk: utils_noop,
	addChunk: addArrayChunk,
	getFinalChunk: utils_noop,
	finalize: getContentsProperty,
};

;// CONCATENATED MODULE: ./node_modules/get-stream/source/array-buffer.js



async function getStreamAsArrayBuffer(stream, options) {
	return getStreamContents(stream, arrayBufferMethods, options);
}

const initArrayBuffer = () => ({contents: new ArrayBuffer(0)});

const useTextEncoder = chunk => array_buffer_textEncoder.encode(chunk);
const array_buffer_textEncoder = new TextEncoder();

const useUint8Array = chunk => new Uint8Array(chunk);

const useUint8ArrayWithOffset = chunk => new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);

const truncateArrayBufferChunk = (convertedChunk, chunkSize) => convertedChunk.slice(0, chunkSize);

// `contents` is an increasingly growing `Uint8Array`.
const addArrayBufferChunk = (convertedChunk, {contents, length: previousLength}, length) => {
	const newContents = hasArrayBufferResize() ? resizeArrayBuffer(contents, length) : resizeArrayBufferSlow(contents, length);
	new Uint8Array(newContents).set(convertedChunk, previousLength);
	return newContents;
};

// Without `ArrayBuffer.resize()`, `contents` size is always a power of 2.
// This means its last bytes are zeroes (not stream data), which need to be
// trimmed at the end with `ArrayBuffer.slice()`.
const resizeArrayBufferSlow = (contents, length) => {
	if (length <= contents.byteLength) {
		return contents;
	}

	const arrayBuffer = new ArrayBuffer(getNewContentsLength(length));
	new Uint8Array(arrayBuffer).set(new Uint8Array(contents), 0);
	return arrayBuffer;
};

// With `ArrayBuffer.resize()`, `contents` size matches exactly the size of
// the stream data. It does not include extraneous zeroes to trim at the end.
// The underlying `ArrayBuffer` does allocate a number of bytes that is a power
// of 2, but those bytes are only visible after calling `ArrayBuffer.resize()`.
const resizeArrayBuffer = (contents, length) => {
	if (length <= contents.maxByteLength) {
		contents.resize(length);
		return contents;
	}

	const arrayBuffer = new ArrayBuffer(length, {maxByteLength: getNewContentsLength(length)});
	new Uint8Array(arrayBuffer).set(new Uint8Array(contents), 0);
	return arrayBuffer;
};

// Retrieve the closest `length` that is both >= and a power of 2
const getNewContentsLength = length => SCALE_FACTOR ** Math.ceil(Math.log(length) / Math.log(SCALE_FACTOR));

const SCALE_FACTOR = 2;

const finalizeArrayBuffer = ({contents, length}) => hasArrayBufferResize() ? contents : contents.slice(0, length);

// `ArrayBuffer.slice()` is slow. When `ArrayBuffer.resize()` is available
// (Node >=20.0.0, Safari >=16.4 and Chrome), we can use it instead.
// eslint-disable-next-line no-warning-comments
// TODO: remove after dropping support for Node 20.
// eslint-disable-next-line no-warning-comments
// TODO: use `ArrayBuffer.transferToFixedLength()` instead once it is available
const hasArrayBufferResize = () => 'resize' in ArrayBuffer.prototype;

const arrayBufferMethods = {
	init: initArrayBuffer,
	convertChunk: {
		string: useTextEncoder,
		buffer: useUint8Array,
		arrayBuffer: useUint8Array,
		dataView: useUint8ArrayWithOffset,
		typedArray: useUint8ArrayWithOffset,
		others: throwObjectStream,
	},
	getSize: getLengthProperty,
	truncateChunk: truncateArrayBufferChunk,
	addChunk: addArrayBufferChunk,
	getFinalChunk: utils_noop,
	finalize: finalizeArrayBuffer,
};

;// CONCATENATED MODULE: ./node_modules/get-stream/source/string.js



async function getStreamAsString(stream, options) {
	return getStreamContents(stream, stringMethods, options);
}

const initString = () => ({contents: '', textDecoder: new TextDecoder()});

const useTextDecoder = (chunk, {textDecoder}) => textDecoder.decode(chunk, {stream: true});

const addStringChunk = (convertedChunk, {contents}) => contents + convertedChunk;

const truncateStringChunk = (convertedChunk, chunkSize) => convertedChunk.slice(0, chunkSize);

const getFinalStringChunk = ({textDecoder}) => {
	const finalChunk = textDecoder.decode();
	return finalChunk === '' ? undefined : finalChunk;
};

const stringMethods = {
	init: initString,
	convertChunk: {
		string: utils_identity,
		buffer: useTextDecoder,
		arrayBuffer: useTextDecoder,
		dataView: useTextDecoder,
		typedArray: useTextDecoder,
		others: throwObjectStream,
	},
	getSize: getLengthProperty,
	truncateChunk: truncateStringChunk,
	addChunk: addStringChunk,
	getFinalChunk: getFinalStringChunk,
	finalize: getContentsProperty,
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/io/contents.js








// Retrieve `result.stdout|stderr|all|stdio[*]`
const getStreamOutput = async ({stream, onStreamEnd, fdNumber, encoding, buffer, maxBuffer, lines, allMixed, stripFinalNewline, allFds, verboseInfo, streamInfo}) => {
	const logPromise = logOutputAsync({
		stream,
		onStreamEnd,
		fdNumber,
		encoding,
		allMixed,
		verboseInfo,
		streamInfo,
	});

	if (!buffer) {
		await Promise.all([resumeStream(stream), logPromise]);
		return;
	}

	const stripFinalNewlineValue = getStripFinalNewline(stripFinalNewline, fdNumber, allFds);
	const iterable = iterateForResult({
		stream,
		onStreamEnd,
		lines,
		encoding,
		stripFinalNewline: stripFinalNewlineValue,
		allMixed,
	});
	const [output] = await Promise.all([
		contents_getStreamContents({
			stream,
			iterable,
			fdNumber,
			encoding,
			maxBuffer,
			lines,
		}),
		logPromise,
	]);
	return output;
};

const logOutputAsync = async ({stream, onStreamEnd, fdNumber, encoding, allMixed, verboseInfo, streamInfo: {fileDescriptors}}) => {
	if (!shouldLogOutput({
		stdioItems: fileDescriptors[fdNumber]?.stdioItems,
		encoding,
		verboseInfo,
		fdNumber,
	})) {
		return;
	}

	const linesIterable = iterateForResult({
		stream,
		onStreamEnd,
		lines: true,
		encoding,
		stripFinalNewline: true,
		allMixed,
	});
	await logLines(linesIterable, stream, fdNumber, verboseInfo);
};

// When using `buffer: false`, users need to read `subprocess.stdout|stderr|all` right away
// See https://github.com/sindresorhus/execa/issues/730 and https://github.com/sindresorhus/execa/pull/729#discussion_r1465496310
const resumeStream = async stream => {
	await (0,promises_namespaceObject.setImmediate)();
	if (stream.readableFlowing === null) {
		stream.resume();
	}
};

const contents_getStreamContents = async ({stream, stream: {readableObjectMode}, iterable, fdNumber, encoding, maxBuffer, lines}) => {
	try {
		if (readableObjectMode || lines) {
			return await getStreamAsArray(iterable, {maxBuffer});
		}

		return encoding === 'buffer' ? new Uint8Array(await getStreamAsArrayBuffer(iterable, {maxBuffer})) : (await getStreamAsString(iterable, {maxBuffer}));
	} catch (error) {
		return handleBufferedData(handleMaxBuffer({
			error,
			stream,
			readableObjectMode,
			lines,
			encoding,
			fdNumber,
		}));
	}
};

// On failure, `result.stdout|stderr|all` should contain the currently buffered stream
// They are automatically closed and flushed by Node.js when the subprocess exits
// When `buffer` is `false`, `streamPromise` is `undefined` and there is no buffered data to retrieve
const getBufferedData = async streamPromise => {
	try {
		return await streamPromise;
	} catch (error) {
		return handleBufferedData(error);
	}
};

// Ensure we are returning Uint8Arrays when using `encoding: 'buffer'`
// The error might be any value thrown by the `verbose` function, including `null` or `undefined`
const handleBufferedData = error => isArrayBuffer(error?.bufferedData)
	? new Uint8Array(error.bufferedData)
	: error?.bufferedData;

;// CONCATENATED MODULE: ./node_modules/execa/lib/resolve/stdio.js



// Read the contents of `subprocess.std*` and|or wait for its completion
const waitForStdioStreams = ({subprocess, encoding, buffer, maxBuffer, lines, stripFinalNewline, verboseInfo, streamInfo}) => subprocess.stdio.map((stream, fdNumber) => waitForSubprocessStream({
	stream,
	fdNumber,
	encoding,
	buffer: buffer[fdNumber],
	maxBuffer: maxBuffer[fdNumber],
	lines: lines[fdNumber],
	allMixed: false,
	stripFinalNewline,
	verboseInfo,
	streamInfo,
}));

// Read the contents of `subprocess.std*` or `subprocess.all` and|or wait for its completion
const waitForSubprocessStream = async ({stream, fdNumber, encoding, buffer, maxBuffer, lines, allMixed, stripFinalNewline, allFds, verboseInfo, streamInfo}) => {
	if (!stream) {
		return;
	}

	const onStreamEnd = waitForStream(stream, fdNumber, streamInfo);
	if (isInputFileDescriptor(streamInfo, fdNumber)) {
		await onStreamEnd;
		return;
	}

	const [output] = await Promise.all([
		getStreamOutput({
			stream,
			onStreamEnd,
			fdNumber,
			encoding,
			buffer,
			maxBuffer,
			lines,
			allMixed,
			stripFinalNewline,
			allFds,
			verboseInfo,
			streamInfo,
		}),
		onStreamEnd,
	]);
	return output;
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/resolve/all-async.js





// `all` interleaves `stdout` and `stderr`
const makeAllStream = ({stdout, stderr}, {all}) => {
	if (!all) {
		return;
	}

	const fileDescriptors = [[stdout, 1], [stderr, 2]].filter(([stream]) => stream);
	return fileDescriptors.length === 0 ? undefined : setAllStream(mergeStreams(fileDescriptors.map(([stream]) => stream)));
};

// The file descriptors which `result.all` contains, which the `all` options must follow
// Unlike `subprocess.all`, this excludes the file descriptors which are not buffered, since their output is not included
const getAllFds = ({stdout, stderr}, [, bufferStdout, bufferStderr]) => [
	...(stdout !== null && bufferStdout ? [1] : []),
	...(stderr !== null && bufferStderr ? [2] : []),
];

// Read the contents of `subprocess.all` and|or wait for its completion
const waitForAllStream = ({subprocess, all, encoding, buffer, maxBuffer, lines, stripFinalNewline, verboseInfo, streamInfo}) => {
	const {stream, buffer: bufferAll, drainedStream} = getAllStream(subprocess, all, buffer);
	return Promise.all([
		waitForSubprocessStream({
			stream,
			buffer: bufferAll,
			fdNumber: 'all',
			encoding,
			maxBuffer: maxBuffer[1] + maxBuffer[2],
			lines: lines[1] || lines[2],
			allFds: getAllFds(subprocess, buffer),
			// A single buffered descriptor keeps its own object mode, even when the merged stream has mixed modes.
			allMixed: stream === all && getAllMixed(subprocess, all),
			stripFinalNewline,
			verboseInfo,
			streamInfo,
		}),
		// When only one of the two file descriptors is buffered, its stream is read instead of the merged one.
		// The merged one is then drained, otherwise it would apply backpressure on that file descriptor and hang the subprocess.
		drainedStream === undefined ? undefined : resumeStream(drainedStream),
	]).then(([output]) => output);
};

const getAllStream = ({stdout, stderr}, all, [, bufferStdout, bufferStderr]) => {
	const buffer = bufferStdout || bufferStderr;
	if (!buffer) {
		return {stream: all, buffer};
	}

	if (!all) {
		return {stream: undefined, buffer};
	}

	if (!bufferStdout) {
		return {stream: stderr, buffer, drainedStream: all};
	}

	return bufferStderr ? {stream: all, buffer} : {stream: stdout, buffer, drainedStream: all};
};

// When `subprocess.stdout` is in objectMode but not `subprocess.stderr` (or the opposite), we need to use both:
//  - `getStreamAsArray()` for the chunks in objectMode, to return as an array without changing each chunk
//  - `getStreamAsArrayBuffer()` or `getStream()` for the chunks not in objectMode, to convert them from Buffers to string or Uint8Array
// We do this by emulating the Buffer -> string|Uint8Array conversion performed by `get-stream` with our own, which is identical.
const getAllMixed = ({stdout, stderr}, all) => all
	&& stdout
	&& stderr
	&& stdout.readableObjectMode !== stderr.readableObjectMode;

;// CONCATENATED MODULE: ./node_modules/execa/lib/verbose/ipc.js



// When `verbose` is `'full'`, print IPC messages from the subprocess
const shouldLogIpc = verboseInfo => isFullVerbose(verboseInfo, 'ipc');

const logIpcOutput = (message, verboseInfo) => {
	const verboseMessage = serializeVerboseMessage(message);
	verboseLog({
		type: 'ipc',
		verboseMessage,
		fdNumber: 'ipc',
		verboseInfo,
	});
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/ipc/buffer-messages.js





// Iterate through IPC messages sent by the subprocess
const waitForIpcOutput = async ({
	subprocess,
	buffer: bufferArray,
	maxBuffer: maxBufferArray,
	ipc,
	ipcOutput,
	verboseInfo,
}) => {
	if (!ipc) {
		return ipcOutput;
	}

	const isVerbose = shouldLogIpc(verboseInfo);
	const buffer = getFdSpecificValue(bufferArray, 'ipc');
	const maxBuffer = getFdSpecificValue(maxBufferArray, 'ipc');
	// A throwing `verbose` function must not prevent the following messages from being buffered
	const logErrors = [];

	for await (const message of loopOnMessages({
		anyProcess: subprocess,
		channel: subprocess.channel,
		isSubprocess: false,
		ipc,
		shouldAwait: false,
		reference: true,
	})) {
		if (buffer) {
			checkIpcMaxBuffer(ipcOutput, maxBuffer);
			ipcOutput.push(message);
		}

		if (isVerbose) {
			try {
				logIpcOutput(message, verboseInfo);
			} catch (error) {
				logErrors.push(error);
			}
		}
	}

	if (logErrors.length > 0) {
		throw logErrors[0];
	}

	return ipcOutput;
};

const getBufferedIpcOutput = async (ipcOutputPromise, ipcOutput) => {
	await Promise.allSettled([ipcOutputPromise]);
	return ipcOutput;
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/resolve/wait-subprocess.js
















// Retrieve result of subprocess: exit code, signal, error, streams (stdout/stderr/all)
const waitForSubprocessResult = async ({
	subprocess,
	kill,
	all,
	options: {
		encoding,
		buffer,
		maxBuffer,
		lines,
		timeoutDuration: timeout,
		cancelSignal,
		gracefulCancel,
		forceKillAfterDelay,
		stripFinalNewline,
		ipc,
		ipcInput,
	},
	context,
	verboseInfo,
	fileDescriptors,
	originalStreams,
	onInternalError,
	controller,
}) => {
	const exitPromise = waitForExit(subprocess, context);
	const streamInfo = {
		originalStreams,
		fileDescriptors,
		subprocess,
		exitPromise,
		propagating: false,
	};

	const stdioPromises = waitForStdioStreams({
		subprocess,
		encoding,
		buffer,
		maxBuffer,
		lines,
		stripFinalNewline,
		verboseInfo,
		streamInfo,
	});
	const allPromise = waitForAllStream({
		subprocess,
		all,
		encoding,
		buffer,
		maxBuffer,
		lines,
		stripFinalNewline,
		verboseInfo,
		streamInfo,
	});
	const ipcOutput = [];
	const ipcOutputPromise = waitForIpcOutput({
		subprocess,
		buffer,
		maxBuffer,
		ipc,
		ipcOutput,
		verboseInfo,
	});
	const originalPromises = waitForOriginalStreams(originalStreams, subprocess, streamInfo);
	const customStreamsEndPromises = waitForCustomStreamsEnd(fileDescriptors, streamInfo);

	try {
		return await Promise.race([
			Promise.all([
				{},
				waitForSuccessfulExit(exitPromise),
				Promise.all(stdioPromises),
				allPromise,
				ipcOutputPromise,
				sendIpcInput(subprocess, ipcInput, ipc),
				...originalPromises,
				...customStreamsEndPromises,
			]),
			onInternalError,
			throwOnSubprocessError(subprocess, controller),
			...throwOnTimeout(kill, timeout, context, controller),
			...throwOnCancel({
				kill,
				cancelSignal,
				gracefulCancel,
				context,
				controller,
			}),
			...throwOnGracefulCancel({
				subprocess,
				kill,
				cancelSignal,
				gracefulCancel,
				forceKillAfterDelay,
				context,
				controller,
			}),
		]);
	} catch (error) {
		context.terminationReason ??= 'other';
		// Closing the output stream does not stop a subprocess that stays alive without writing again.
		if (error instanceof MaxBufferError) {
			kill();
		}

		return Promise.all([
			{error},
			exitPromise,
			Promise.all(stdioPromises.map(stdioPromise => getBufferedData(stdioPromise))),
			getBufferedData(allPromise),
			getBufferedIpcOutput(ipcOutputPromise, ipcOutput),
			Promise.allSettled(originalPromises),
			Promise.allSettled(customStreamsEndPromises),
		]);
	}
};

// Transforms replace `subprocess.std*`, which means they are not exposed to users.
// However, we still want to wait for their completion.
const waitForOriginalStreams = (originalStreams, subprocess, streamInfo) =>
	originalStreams.map((stream, fdNumber) => stream === subprocess.stdio[fdNumber]
		? undefined
		: waitForStream(stream, fdNumber, streamInfo));

// Some `stdin`/`stdout`/`stderr` options create a stream, e.g. when passing a file path.
// The `.pipe()` method automatically ends that stream when `subprocess` ends.
// This makes sure we wait for the completion of those streams, in order to catch any error.
const waitForCustomStreamsEnd = (fileDescriptors, streamInfo) => fileDescriptors.flatMap(({stdioItems, direction}, fdNumber) => stdioItems
	.filter(({value, stream = value}) => is_stream_isStream(stream, {checkOpen: false}) && !isStandardStream(stream))
	.map(({type, value, stream = value}) => waitForStream(stream, fdNumber, streamInfo, {
		isSameDirection: TRANSFORM_TYPES.has(type),
		stopOnExit: type === 'native',
		// Output streams are destinations which are handed back to the user: waiting for their readable side would mean waiting for the user to consume them.
		readable: direction !== 'output' || TRANSFORM_TYPES.has(type),
	})));

// Fails when the subprocess emits an `error` event
const throwOnSubprocessError = async (subprocess, {signal}) => {
	const [error] = await (0,external_node_events_namespaceObject.once)(subprocess, 'error', {signal});
	throw error;
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/convert/writable.js








// Create a `Writable` stream that forwards to `stdin` and awaits the subprocess
const createWritable = ({subprocess, concurrentStreams}, options) => {
	const {to} = copyOptions(options);
	// Retrieve `stdin` (or other stream depending on `to`)
	const subprocessStdin = getToStream(subprocess, to);
	const {waitWritableFinal, waitWritableDestroy} = addWritableConcurrentStreams(concurrentStreams, subprocessStdin);
	const writable = new external_node_stream_namespaceObject.Writable({
		...getWritableMethods(subprocessStdin, subprocess, waitWritableFinal),
		destroy: (0,external_node_util_namespaceObject.callbackify)(onWritableDestroy.bind(undefined, {
			subprocessStdin,
			subprocess,
			waitWritableFinal,
			waitWritableDestroy,
		})),
		highWaterMark: subprocessStdin.writableHighWaterMark,
		objectMode: subprocessStdin.writableObjectMode,
	});
	onStdinFinished(subprocessStdin, writable, undefined, subprocess);
	return writable;
};

// Register both writable lifecycle waits for an already validated stream.
const addWritableConcurrentStreams = (concurrentStreams, subprocessStdin) => {
	const waitWritableFinal = addConcurrentStream(concurrentStreams, subprocessStdin, 'writableFinal');
	const waitWritableDestroy = addConcurrentStream(concurrentStreams, subprocessStdin, 'writableDestroy');
	return {waitWritableFinal, waitWritableDestroy};
};

const getWritableMethods = (subprocessStdin, subprocess, waitWritableFinal) => ({
	write: onWrite.bind(undefined, subprocessStdin),
	final: (0,external_node_util_namespaceObject.callbackify)(onWritableFinal.bind(undefined, subprocessStdin, subprocess, waitWritableFinal)),
});

// Forwards data from `writable` to `stdin`
const onWrite = (subprocessStdin, chunk, encoding, done) => {
	if (subprocessStdin.write(chunk, encoding)) {
		done();
	} else {
		subprocessStdin.once('drain', done);
	}
};

// Ensures that the writable `final` and readable `end` events awaits the subprocess.
// Like this, any subprocess failure is propagated as a stream `error` event, instead of being lost.
// The user does not need to `await` the subprocess anymore, but now needs to await the stream completion or error.
// When multiple writables are targeting the same stream, they wait for each other, unless the subprocess ends first.
const onWritableFinal = async (subprocessStdin, subprocess, waitWritableFinal) => {
	if (!await waitForConcurrentStreams(waitWritableFinal, subprocess)) {
		return;
	}

	if (subprocessStdin.writable) {
		subprocessStdin.end();
	}

	await subprocess;
};

// When `subprocess.stdin` ends/aborts/errors, do the same on `writable`.
const onStdinFinished = async (subprocessStdin, writable, subprocessStdout, subprocess) => {
	try {
		await waitForSubprocessStdin(subprocessStdin);
		await subprocess;
		if (writable.writable) {
			writable.end();
		}
	} catch (error) {
		await safeWaitForSubprocessStdout(subprocessStdout);
		// `writable.writable` is already `false` once `writable.end()` is called, although its pending writes still wait for `stdin`
		destroyOtherStream(writable, !writable.writableFinished, await getSubprocessError(subprocess, error));
	}
};

const getSubprocessError = async (subprocess, error) => {
	if (!shouldUseSubprocessError(error)) {
		return error;
	}

	try {
		await subprocess;
	} catch (subprocessError) {
		return subprocessError;
	}

	return error;
};

// `EPIPE` happens when the subprocess fails without reading its `stdin`, e.g. when it fails to spawn
const shouldUseSubprocessError = error => error === undefined
	|| isStreamAbort(error)
	|| error.code === 'EPIPE';

// When `writable` aborts/errors, do the same on `subprocess.stdin`
const onWritableDestroy = async ({subprocessStdin, subprocess, waitWritableFinal, waitWritableDestroy}, error) => {
	await waitForConcurrentStreams(waitWritableFinal, subprocess);
	if (await waitForConcurrentStreams(waitWritableDestroy, subprocess)) {
		destroyOtherWritable(subprocessStdin, error);
		await subprocess;
	}

	throwDestroyError(error);
};

const destroyOtherWritable = (stream, error) => {
	destroyOtherStream(stream, stream.writable, error);
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/convert/duplex.js









// Create a `Duplex` stream combining both `subprocess.readable()` and `subprocess.writable()`
const createDuplex = ({subprocess, concurrentStreams, encoding}, options) => {
	const {from, to, binary: binaryOption = true, preserveNewlines = true} = copyOptions(options);
	checkBooleanOption(binaryOption, 'binary');
	checkBooleanOption(preserveNewlines, 'preserveNewlines');
	const binary = binaryOption || BINARY_ENCODINGS.has(encoding);
	// Validate both directions before registering lifecycle waits, since a thrown option error must not leave a concurrent stream behind.
	const subprocessStdout = getFromStream(subprocess, from);
	const subprocessStdin = getToStream(subprocess, to);
	const waitReadableDestroy = addConcurrentStream(concurrentStreams, subprocessStdout, 'readableDestroy');
	const {waitWritableFinal, waitWritableDestroy} = addWritableConcurrentStreams(concurrentStreams, subprocessStdin);
	const {readableEncoding, readableObjectMode, readableHighWaterMark} = getReadableOptions(subprocessStdout, binary);
	const {read, onStdoutDataDone} = getReadableMethods({
		subprocessStdout,
		subprocess,
		binary,
		encoding,
		preserveNewlines,
	});
	const duplex = new external_node_stream_namespaceObject.Duplex({
		read,
		...getWritableMethods(subprocessStdin, subprocess, waitWritableFinal),
		destroy: (0,external_node_util_namespaceObject.callbackify)(onDuplexDestroy.bind(undefined, {
			subprocessStdout,
			subprocessStdin,
			subprocess,
			waitReadableDestroy,
			waitWritableFinal,
			waitWritableDestroy,
		})),
		readableHighWaterMark,
		writableHighWaterMark: subprocessStdin.writableHighWaterMark,
		readableObjectMode,
		writableObjectMode: subprocessStdin.writableObjectMode,
		encoding: readableEncoding,
	});
	onStdoutFinished({
		subprocessStdout,
		onStdoutDataDone,
		readable: duplex,
		subprocess,
		subprocessStdin,
	});
	onStdinFinished(subprocessStdin, duplex, subprocessStdout, subprocess);
	return duplex;
};

const onDuplexDestroy = async ({subprocessStdout, subprocessStdin, subprocess, waitReadableDestroy, waitWritableFinal, waitWritableDestroy}, error) => {
	await Promise.all([
		onReadableDestroy({subprocessStdout, subprocess, waitReadableDestroy}, error),
		onWritableDestroy({
			subprocessStdin,
			subprocess,
			waitWritableFinal,
			waitWritableDestroy,
		}, error),
	]);
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/convert/add.js







// Add methods to convert the subprocess to a stream or iterable
const addConvertedStreams = (subprocess, {encoding}) => {
	const concurrentStreams = initializeConcurrentStreams();
	subprocess.readable = createReadable.bind(undefined, {subprocess, concurrentStreams, encoding});
	subprocess.writable = createWritable.bind(undefined, {subprocess, concurrentStreams});
	subprocess.duplex = createDuplex.bind(undefined, {subprocess, concurrentStreams, encoding});
	subprocess.readableStream = createReadableStream.bind(undefined, subprocess);
	subprocess.writableStream = createWritableStream.bind(undefined, subprocess);
	subprocess.transformStream = createTransformStream.bind(undefined, subprocess);
	subprocess.iterable = createIterable.bind(undefined, subprocess, encoding);
	subprocess[Symbol.asyncIterator] = createIterable.bind(undefined, subprocess, encoding, {});
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/methods/promise.js
// The return value is a native Promise with Execa-specific properties.
const mergePromise = (promise, properties) => Object.assign(promise, properties);

;// CONCATENATED MODULE: ./node_modules/execa/lib/methods/main-async.js

























// Main shared logic for all async methods: `execa()`, `$`, `execaNode()`
const execaCoreAsync = (rawFile, rawArguments, rawOptions, createNested) => {
	const {file, commandArguments, command, escapedCommand, startTime, verboseInfo, options, fileDescriptors} = handleAsyncArguments(rawFile, rawArguments, rawOptions);
	const {subprocess: nodeChildProcess, promise, kill, all, convertedStreams} = spawnSubprocessAsync({
		file,
		commandArguments,
		options,
		startTime,
		verboseInfo,
		command,
		escapedCommand,
		fileDescriptors,
	});
	const subprocess = getSubprocessPromise({
		promise,
		nodeChildProcess,
		kill,
		all,
		convertedStreams,
		options,
	});
	subprocess.pipe = pipeToSubprocess.bind(undefined, {
		source: subprocess,
		sourcePromise: promise,
		boundOptions: {},
		createNested,
	});
	SUBPROCESS_OPTIONS.set(subprocess, {options, fileDescriptors});
	return subprocess;
};

// Compute arguments to pass to `child_process.spawn()`
const handleAsyncArguments = (rawFile, rawArguments, rawOptions) => {
	const {command, escapedCommand, startTime, verboseInfo} = handleCommand(rawFile, rawArguments, rawOptions);
	const {file, commandArguments, options: normalizedOptions} = normalizeOptions(rawFile, rawArguments, rawOptions);
	const options = handleAsyncOptions(normalizedOptions);
	const fileDescriptors = handleStdioAsync(options, verboseInfo);
	return {
		file,
		commandArguments,
		command,
		escapedCommand,
		startTime,
		verboseInfo,
		options,
		fileDescriptors,
	};
};

// Options normalization logic specific to async methods.
// Prevent passing the `timeout` option directly to `child_process.spawn()`.
// The `signal` option is not passed either: it has been renamed and is validated in `normalizeOptions()`, for both synchronous and asynchronous methods.
// The returned object keeps a null prototype, otherwise a polluted `Object.prototype` would inject option values.
const handleAsyncOptions = ({timeout, signal, ...options}) => ({__proto__: null, ...options, timeoutDuration: timeout});

const spawnSubprocessAsync = ({file, commandArguments, options, startTime, verboseInfo, command, escapedCommand, fileDescriptors}) => {
	let subprocess;
	try {
		subprocess = (0,external_node_child_process_namespaceObject.spawn)(...concatenateShell(file, commandArguments, getSpawnOptions(options)));
	} catch (error) {
		return handleEarlyError({
			error,
			command,
			escapedCommand,
			fileDescriptors,
			options,
			startTime,
			verboseInfo,
		});
	}

	// With EMFILE or ENFILE, Node.js does not create the subprocess' streams, and emits the error on the next tick instead of throwing it.
	// The listener must be added right away, or that error would crash the current process.
	if (subprocess.stdio === undefined) {
		return handleEarlyError({
			error: (0,external_node_events_namespaceObject.once)(subprocess, 'error').then(([error]) => error),
			command,
			escapedCommand,
			fileDescriptors,
			options,
			startTime,
			verboseInfo,
		});
	}

	const controller = new AbortController();
	(0,external_node_events_namespaceObject.setMaxListeners)(Infinity, controller.signal);

	const originalStreams = [...subprocess.stdio];
	pipeOutputAsync(subprocess, fileDescriptors, controller);
	setIpcSubprocessOptions(subprocess, options);

	const context = {};
	const onInternalError = createDeferred();
	const kill = subprocessKill.bind(undefined, {
		kill: getKillFunction(subprocess, options),
		options,
		onInternalError,
		context,
		controller,
	});
	cleanupOnExit(kill, options, controller);
	const all = makeAllStream(subprocess, options);

	const promise = handlePromise({
		subprocess,
		kill,
		all,
		options,
		startTime,
		verboseInfo,
		fileDescriptors,
		originalStreams,
		command,
		escapedCommand,
		context,
		onInternalError,
		controller,
	});
	return {
		subprocess,
		promise,
		kill,
		all,
	};
};

const getSubprocessPromise = ({promise, nodeChildProcess, kill, all, convertedStreams, options}) => {
	const subprocess = mergePromise(promise, getSubprocessProperties(nodeChildProcess, all));
	subprocess.kill = kill ?? subprocess.kill;
	if (convertedStreams === undefined) {
		addConvertedStreams(subprocess, options);
	} else {
		Object.assign(subprocess, convertedStreams);
	}

	addIpcMethods(subprocess, nodeChildProcess, options);
	return subprocess;
};

const getSubprocessProperties = (nodeChildProcess, all) => ({
	nodeChildProcess,
	pid: nodeChildProcess.pid,
	stdin: nodeChildProcess.stdin,
	stdout: nodeChildProcess.stdout,
	stderr: nodeChildProcess.stderr,
	stdio: nodeChildProcess.stdio,
	all,
	kill: nodeChildProcess.kill.bind(nodeChildProcess),
});

// Asynchronous logic, as opposed to the previous logic which can be run synchronously, i.e. can be returned to user right away
const handlePromise = async ({subprocess, kill, all: allStream, options, startTime, verboseInfo, fileDescriptors, originalStreams, command, escapedCommand, context, onInternalError, controller}) => {
	const [
		errorInfo,
		[exitCode, signal],
		stdioResults,
		allResult,
		ipcOutput,
	] = await waitForSubprocessResult({
		subprocess,
		kill,
		all: allStream,
		options,
		context,
		verboseInfo,
		fileDescriptors,
		originalStreams,
		onInternalError,
		controller,
	});
	controller.abort();
	onInternalError.resolve();

	const stdio = stdioResults.map((stdioResult, fdNumber) => stripNewline(stdioResult, options, fdNumber));
	const all = stripNewline(allResult, options, 'all', getAllFds(subprocess, options.buffer));
	const result = getAsyncResult({
		errorInfo,
		exitCode,
		signal,
		stdio,
		all,
		ipcOutput,
		context,
		options,
		command,
		escapedCommand,
		startTime,
	});
	return handleResult(result, verboseInfo, options);
};

const getAsyncResult = ({errorInfo, exitCode, signal, stdio, all, ipcOutput, context, options, command, escapedCommand, startTime}) => Object.hasOwn(errorInfo, 'error')
	? makeError({
		error: errorInfo.error,
		command,
		escapedCommand,
		timedOut: context.terminationReason === 'timeout',
		isCanceled: context.terminationReason === 'cancel' || context.terminationReason === 'gracefulCancel',
		isGracefullyCanceled: context.terminationReason === 'gracefulCancel',
		isMaxBuffer: errorInfo.error instanceof MaxBufferError,
		isForcefullyTerminated: context.isForcefullyTerminated,
		exitCode,
		signal,
		stdio,
		all,
		ipcOutput,
		options,
		startTime,
		isSync: false,
	})
	: makeSuccessResult({
		command,
		escapedCommand,
		stdio,
		all,
		ipcOutput,
		options,
		startTime,
	});

;// CONCATENATED MODULE: ./node_modules/execa/lib/methods/bind.js



// Deep merge specific options like `env`. Shallow merge the other ones.
// Use spread (which only copies own properties) to safely read from boundOptions without prototype pollution
const mergeOptions = (boundOptions, options) => {
	const safeBoundOptions = {__proto__: null, ...boundOptions};
	const mergedOptions = Object.fromEntries(Object.entries(options).map(([optionName, optionValue]) => [
		optionName,
		mergeOption(optionName, safeBoundOptions[optionName], optionValue),
	]));
	return {__proto__: null, ...safeBoundOptions, ...mergedOptions};
};

const mergeOption = (optionName, boundOptionValue, optionValue) => DEEP_OPTIONS.has(optionName) && isPlainObject(boundOptionValue) && isPlainObject(optionValue) ? {...boundOptionValue, ...optionValue} : optionValue;

const DEEP_OPTIONS = new Set(['env', ...FD_SPECIFIC_OPTIONS]);

;// CONCATENATED MODULE: ./node_modules/execa/lib/methods/create.js







// Wraps every exported methods to provide the following features:
//  - template string syntax: execa`command argument`
//  - options binding: boundExeca = execa(options)
//  - optional argument/options: execa(file), execa(file, args), execa(file, options), execa(file, args, options)
// `mapArguments()` and `setBoundExeca()` allows for method-specific logic.
const createExeca = (mapArguments, boundOptions, deepOptions, setBoundExeca) => {
	const createNested = (mapArguments, boundOptions, setBoundExeca) => createExeca(mapArguments, boundOptions, deepOptions, setBoundExeca);
	const boundExeca = (...execaArguments) => callBoundExeca({
		mapArguments,
		deepOptions,
		boundOptions,
		setBoundExeca,
		createNested,
	}, ...execaArguments);

	if (setBoundExeca !== undefined) {
		setBoundExeca(boundExeca, createNested, boundOptions);
	}

	return boundExeca;
};

const callBoundExeca = ({mapArguments, deepOptions = {}, boundOptions = {}, setBoundExeca, createNested}, firstArgument, ...nextArguments) => {
	if (isPlainObject(firstArgument)) {
		return createNested(mapArguments, mergeOptions(boundOptions, firstArgument), setBoundExeca);
	}

	const {file, commandArguments, options, isSync} = parseArguments({
		mapArguments,
		firstArgument,
		nextArguments,
		deepOptions,
		boundOptions,
	});
	return isSync
		? execaCoreSync(file, commandArguments, options)
		: execaCoreAsync(file, commandArguments, options, createNested);
};

const parseArguments = ({mapArguments, firstArgument, nextArguments, deepOptions, boundOptions}) => {
	const callArguments = isTemplateString(firstArgument)
		? parseTemplates(firstArgument, nextArguments)
		: [firstArgument, ...nextArguments];
	const [initialFile, initialArguments, initialOptions] = normalizeParameters(...callArguments);
	const mergedOptions = mergeOptions(mergeOptions(deepOptions, boundOptions), initialOptions);
	// Explicit `undefined` resets to the method's default, including on pipe destinations.
	for (const [optionName, optionValue] of Object.entries(deepOptions)) {
		if (mergedOptions[optionName] === undefined) {
			mergedOptions[optionName] = optionValue;
		}
	}

	// `mapArguments()` returns a plain object, so its result is read from a null-prototype copy.
	// Otherwise a polluted `Object.prototype` would replace every option, or switch the execution mode.
	const {
		options = mergedOptions,
		isSync = false,
	} = {__proto__: null, ...mapArguments({options: mergedOptions})};
	return {
		file: initialFile,
		commandArguments: initialArguments,
		options,
		isSync,
	};
};

;// CONCATENATED MODULE: ./node_modules/execa/lib/methods/script.js
// Sets `$.sync` and `$.s`
const setScriptSync = (boundExeca, createNested, boundOptions) => {
	boundExeca.sync = createNested(mapScriptSync, boundOptions);
	boundExeca.s = boundExeca.sync;
};

// Main logic for `$`
const mapScriptAsync = ({options}) => getScriptOptions(options);

// Main logic for `$.sync`
const mapScriptSync = ({options}) => ({...getScriptOptions(options), isSync: true});

// `$` is like `execa` but with script-friendly options: `{stdin: 'inherit', preferLocal: true}`
const getScriptOptions = options => ({options: {__proto__: null, ...options, ...getScriptStdinOption(options)}});

const getScriptStdinOption = ({stdin = 'inherit', input, inputFile, stdio}) => input === undefined && inputFile === undefined && stdio === undefined
	? {stdin}
	: {};

// When using $(...).pipe(...), most script-friendly options should apply to both commands.
// However, some options (like `stdin: 'inherit'`) would create issues with piping, i.e. cannot be deep.
const deepScriptOptions = {preferLocal: true};

;// CONCATENATED MODULE: ./node_modules/execa/index.js








const execa = createExeca(() => ({}));
const execaSync = createExeca(() => ({isSync: true}));
const execaNode = createExeca(mapNode);
const $ = createExeca(mapScriptAsync, {}, deepScriptOptions, setScriptSync);

const {
	sendMessage: execa_sendMessage,
	getOneMessage: execa_getOneMessage,
	getEachMessage: execa_getEachMessage,
	getCancelSignal: execa_getCancelSignal,
} = getIpcExport();


;// CONCATENATED MODULE: ./src/host/environment.ts
// The environment every command this tool starts gets: this process's own, minus every
// variable that may carry a secret. The tool's inputs (INPUT_* in the action,
// OWNCLOUD_BACKUP_* on the command line) hold the database password and the SSH key, the
// runner's ACTIONS_* and GITHUB_TOKEN hold tokens; a child (occ as the web server's user,
// ssh, rsync, tar, the compressor) needs none of them, and each would show them in
// /proc/PID/environ to its owner. The one command that needs a secret gets it on stdin or
// an fd (src/host/guarded.ts), never from here.
/** Name prefixes of variables the tool or the runner fills with inputs, state and tokens. */
const SECRET_PREFIXES = ['INPUT_', 'STATE_', 'OWNCLOUD_BACKUP_', 'ACTIONS_'];
/**
 * Names that say "credential", whoever set them (GITHUB_TOKEN, NPM_TOKEN, AWS_SECRET_ACCESS_KEY,
 * a runner's own *_PASSWORD, …), and the database clients' own password variables, which
 * would otherwise override the password the tool delivers.
 */
const SECRET_NAME = /TOKEN|SECRET|PASSW|PASSPHRASE|CREDENTIAL|PRIVATE|API_?KEY|AUTH/i;
const CLIENT_PASSWORDS = new Set(['MYSQL_PWD', 'PGPASSWORD']);
/** Whether a variable of this name is kept from every child. */
function isSecretVariable(name) {
    const upper = name.toUpperCase();
    return (SECRET_PREFIXES.some((prefix) => upper.startsWith(prefix)) ||
        CLIENT_PASSWORDS.has(upper) ||
        SECRET_NAME.test(name));
}
/** The environment for a child: `parent` without secret-bearing variables, plus `extra`. */
function childEnvironment(parent, extra = {}) {
    const env = {};
    for (const [name, value] of Object.entries(parent))
        if (value !== undefined && !isSecretVariable(name))
            env[name] = value;
    return { ...env, ...extra };
}

;// CONCATENATED MODULE: ./src/host/reaper.ts
// Children of this tool must not outlive it, even when it is SIGKILLed (which no handler
// of ours ever sees): an rsync left running keeps writing into a backup nobody finishes.
// Each child runs in its own process group (with its own children: rsync forks), and a
// small watcher holds a pipe from this process. The kernel closes that pipe however we
// end; the watcher then kills every process group still registered.


/** The watcher: `+PGID` registers a group, `-PGID` forgets it; end of input kills the rest. */
const REAPER_SCRIPT = `
groups=' '
while IFS= read -r line; do
  case $line in
    +*) groups="$groups\${line#+} " ;;
    -*) p=\${line#-}; case $groups in *" $p "*) groups="\${groups%% $p *} \${groups#* $p }" ;; esac ;;
  esac
done
for g in $groups; do kill -9 "-$g" 2>/dev/null; done
exit 0
`.trim();
class Reaper {
    child;
    alive = true;
    constructor(prefix) {
        const argv = [...prefix, 'sh', '-c', REAPER_SCRIPT, 'owncloud-backup-reaper'];
        this.child = (0,external_node_child_process_namespaceObject.spawn)(argv[0], argv.slice(1), {
            stdio: ['pipe', 'ignore', 'ignore'],
            // No secret-bearing variable reaches it.
            env: childEnvironment(process.env),
            // Its own session: a Ctrl-C in the terminal must not end it before we are done.
            detached: true,
        });
        this.child.once('exit', () => (this.alive = false));
        this.child.once('error', () => (this.alive = false));
        this.child.stdin.on('error', () => (this.alive = false));
        // Neither the watcher nor its pipe keeps this process alive.
        this.child.unref();
        this.child.stdin.unref?.();
    }
    send(line) {
        if (this.alive)
            this.child.stdin.write(`${line}\n`);
    }
    /** The write end of the watcher's pipe as a file descriptor of ours, if it can be had. */
    get fd() {
        const handle = this.child.stdin._handle;
        return this.alive && typeof handle?.fd === 'number' && handle.fd >= 0 ? handle.fd : undefined;
    }
    watch(pgid) {
        this.send(`+${pgid}`);
        return () => this.forget(pgid);
    }
    forget(pgid) {
        this.send(`-${pgid}`);
    }
}
let reaper;
let reaperPrefix = '';
/**
 * Runs a command so that it registers its own process group with the watcher (on fd 3,
 * the watcher's pipe) before it execs: a command seen running is always known to the
 * watcher, however soon after its start this process is killed. (Registering from here
 * after the start leaves a moment in which a kill makes an orphan.)
 */
const SELF_REGISTER = 'printf "+%s\\n" "$$" >&3 && exec 3>&- && exec "$@"';
/** The command wrapped to register itself, or undefined when the watcher's pipe cannot be shared. */
function selfRegistering(argv) {
    reaper ??= new Reaper([]);
    const fd = reaper.fd;
    if (fd === undefined)
        return undefined;
    return { argv: ['sh', '-c', SELF_REGISTER, 'owncloud-backup-child', ...argv], fd };
}
/** Forgets a group that registered itself, once it has ended. */
function forgetGroup(pgid) {
    if (pgid !== undefined)
        reaper?.forget(pgid);
}
/**
 * Registers a child that leads its own process group (spawned detached): its whole group
 * is killed if this process dies before it. Returns the call that forgets it (at its exit).
 */
function killWithUs(pid) {
    if (pid === undefined)
        return () => { };
    reaper ??= new Reaper([]);
    return reaper.watch(pid);
}
/**
 * From now on the watcher runs with this prefix (e.g. `sudo -n --`), so that it can kill
 * the children that run as root through the same prefix. Groups registered before stay
 * with the watcher that knows them.
 */
function elevateReaper(prefix) {
    const key = prefix.join('\0');
    if (prefix.length === 0 || key === reaperPrefix)
        return;
    reaper = new Reaper(prefix);
    reaperPrefix = key;
}

;// CONCATENATED MODULE: ./src/host/process.ts
// Running programs on this machine: the one place that spawns processes. Commands are
// argv arrays; secrets travel on stdin only, so no argv (and no error message built from
// one) ever holds them, and no child inherits a secret-bearing environment variable.




// Generous: execa ends a command whose output outgrows its buffer, and rsync can warn
// about every one of thousands of files. Streamed stdout is not buffered at all.
const OUTPUT_LIMIT = 64 * 1024 * 1024;
function signalNumber(signal) {
    return external_node_os_namespaceObject.constants.signals[signal] ?? 0;
}
function decode(output) {
    if (output === undefined || output === null)
        return '';
    if (typeof output === 'string')
        return output;
    if (output instanceof Uint8Array)
        return Buffer.from(output).toString('utf8');
    return String(output);
}
function spawn(argv, options, streamStdout) {
    if (argv.length === 0)
        throw new Error('empty command');
    // Unless shielded, a command registers itself with the watcher that kills what is left of
    // ours if we die (see reaper.ts).
    const registered = options.shielded ? undefined : selfRegistering(argv);
    const [file, ...args] = registered?.argv ?? argv;
    const child = execa(file, args, {
        // fd 3, when there is one, is the watcher's pipe, shared as it is (execa takes a file
        // descriptor there; its types know only the three standard ones as numbers).
        stdio: (registered
            ? [options.stdinFrom ?? 'pipe', 'pipe', 'pipe', registered.fd]
            : [options.stdinFrom ?? 'pipe', 'pipe', 'pipe']),
        buffer: { stdout: !streamStdout, stderr: !options.onStderr },
        maxBuffer: { stdout: OUTPUT_LIMIT, stderr: OUTPUT_LIMIT },
        reject: false,
        stripFinalNewline: false,
        ...(options.signal ? { cancelSignal: options.signal } : {}),
        forceKillAfterDelay: 3000,
        // Its own process group: with its children (rsync forks), killed as one if we die.
        detached: true,
        ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}),
        // execa would add all of process.env to whatever is given here.
        extendEnv: false,
        env: childEnvironment(process.env, options.env),
        ...(options.cwd ? { cwd: options.cwd } : {}),
        encoding: streamStdout ? 'buffer' : 'utf8',
    });
    const onStderr = options.onStderr;
    if (onStderr)
        child.stderr.on('data', (chunk) => onStderr(typeof chunk === 'string' ? chunk : chunk.toString('utf8')));
    if (registered) {
        const forget = () => forgetGroup(child.pid);
        void child.then(forget, forget);
    }
    else if (!options.shielded) {
        const forget = killWithUs(child.pid);
        void child.then(forget, forget);
    }
    // The other command's pipe is the child's now: this process lets go of its end, or the
    // other command's stream would wait here forever for a reader.
    options.stdinFrom?.destroy();
    // A command that exits without reading its stdin must not crash us with EPIPE.
    if (!options.stdinFrom) {
        child.stdin.on('error', () => { });
        if (options.input !== undefined)
            child.stdin.write(options.input);
        if (!options.keepStdinOpen && !options.feedStdin)
            child.stdin.end();
    }
    const done = child.then((result) => {
        if (options.keepStdinOpen && !options.stdinFrom)
            child.stdin.end();
        const stdout = streamStdout ? '' : decode(result.stdout);
        return {
            exitCode: result.exitCode ?? 128 + (result.signal ? signalNumber(result.signal) : 0),
            stdout,
            stderr: decode(result.stderr),
        };
    });
    return { child, done };
}
/** Runs a command to its end and captures its (small) output. Never throws for an exit code. */
async function runProcess(argv, options = {}) {
    return spawn(argv, options, false).done;
}
/** Starts a command whose stdout the caller streams (dumps, archives). */
function streamProcess(argv, options = {}) {
    const { child, done } = spawn(argv, options, true);
    return {
        stdout: child.stdout,
        stdin: child.stdin,
        done,
        kill: () => {
            child.kill('SIGTERM');
        },
    };
}
/** The last lines of a command's stderr, for an error message. */
function stderrTail(stderr, lines = 5) {
    return stderr
        .trim()
        .split('\n')
        .map((line) => line.trimEnd())
        .filter(Boolean)
        .slice(-lines)
        .join('\n');
}

;// CONCATENATED MODULE: ./src/database/engine.ts

/**
 * The table prefix as hex digits of its UTF-8 bytes: each engine turns them back into a string
 * in SQL, so no prefix (quotes, backslashes, `_` or `%`) can change the query or match as a pattern.
 */
function prefixHex(prefix) {
    return Buffer.from(prefix, 'utf8').toString('hex').toUpperCase();
}
/**
 * Parses row count lines: the table name as hex digits of its UTF-8 bytes (so a name with a
 * tab, a line break or a backslash survives every client's output escaping), a tab, the count.
 */
function parseRowCountLines(stdout) {
    const counts = {};
    for (const line of stdout.split('\n')) {
        const text = line.replace(/\r$/, '');
        if (text.trim() === '')
            continue;
        const match = /^((?:[0-9A-Fa-f]{2})+)\t(\d+)$/.exec(text);
        if (!match)
            throw new BackupError(`Unexpected line in the table row counts (expected HEXNAME<TAB>COUNT): '${text.slice(0, 200)}'`);
        const table = Buffer.from(match[1], 'hex').toString('utf8');
        counts[table] = Number(match[2]);
    }
    return counts;
}
// --- Server-side encryption ----------------------------------------------------------------
/** The app config keys that say whether and how the instance encrypts (app, key). */
const ENCRYPTION_SETTINGS = [
    ['core', 'encryption_enabled'],
    ['core', 'default_encryption_module'],
    ['encryption', 'useMasterKey'],
    ['encryption', 'masterKeyId'],
];
const hexText = (hex) => Buffer.from(hex, 'hex').toString('utf8');
/** Text from hex digits of its UTF-8 bytes; undefined when they are not valid UTF-8. */
function exactText(hex) {
    const bytes = Buffer.from(hex, 'hex');
    const text = bytes.toString('utf8');
    return Buffer.from(text, 'utf8').equals(bytes) ? text : undefined;
}
/**
 * Parses the encryption settings: `HEXAPP<TAB>HEXKEY<TAB>HEXVALUE` lines (hex of UTF-8, so
 * any value survives every client's escaping; an empty value field for NULL).
 */
function parseEncryptionSettings(stdout) {
    const values = new Map();
    for (const line of stdout.split('\n')) {
        const text = line.replace(/\r$/, '');
        if (text.trim() === '')
            continue;
        const match = /^((?:[0-9A-Fa-f]{2})+)\t((?:[0-9A-Fa-f]{2})+)\t((?:[0-9A-Fa-f]{2})*)$/.exec(text);
        if (!match)
            throw new BackupError(`Unexpected line in the encryption settings (expected HEXAPP<TAB>HEXKEY<TAB>HEXVALUE): '${text.slice(0, 200)}'`);
        values.set(`${hexText(match[1])}/${hexText(match[2])}`, hexText(match[3]));
    }
    if (values.get('core/encryption_enabled') !== 'yes')
        return { enabled: false };
    const module = values.get('core/default_encryption_module');
    const masterKey = values.get('encryption/useMasterKey') === '1';
    const masterKeyId = values.get('encryption/masterKeyId');
    return {
        enabled: true,
        ...(module ? { module } : {}),
        mode: masterKey ? 'master-key' : 'per-user-key',
        ...(masterKey && masterKeyId ? { masterKeyId } : {}),
    };
}
function wholeNumber(field, what, nullable) {
    if (nullable && field === '')
        return null;
    if (!/^-?\d+$/.test(field) || !Number.isSafeInteger(Number(field)))
        throw new BackupError(`${what} '${field.slice(0, 40)}' is not a whole number`);
    return Number(field);
}
/**
 * Parses one line of the encrypted files query: `HEXSTORAGE<TAB>HEXPATH<TAB>FILEID<TAB>
 * ENCRYPTED<TAB>SIZE<TAB>UNENCRYPTED_SIZE<TAB>HEXMIMETYPE` (names as hex of their bytes;
 * an empty field for NULL). Undefined for a blank line. A storage or path whose bytes are
 * not UTF-8 is also kept exactly, in `storageHex`/`pathHex`.
 */
function parseEncryptedFileLine(line) {
    const text = line.replace(/\r$/, '');
    if (text.trim() === '')
        return undefined;
    const fields = text.split('\t');
    const hex = /^(?:[0-9A-Fa-f]{2})*$/;
    if (fields.length !== 7 ||
        !hex.test(fields[0]) ||
        !hex.test(fields[1]) ||
        !hex.test(fields[6]))
        throw new BackupError(`Unexpected line in the encrypted files (expected 7 tab-separated fields: storage, path, fileid, encrypted, size, unencrypted_size, mimetype, names in hex): '${text.slice(0, 200)}'`);
    const [storageHex, pathHex, fileid, encrypted, size, unencrypted, mimetype] = fields;
    const storage = exactText(storageHex);
    const path = exactText(pathHex);
    return {
        storage: storage ?? hexText(storageHex),
        path: path ?? hexText(pathHex),
        fileid: wholeNumber(fileid, 'fileid', false),
        encrypted: wholeNumber(encrypted, 'encrypted', false),
        size: wholeNumber(size, 'size', true),
        unencrypted_size: wholeNumber(unencrypted, 'unencrypted_size', true),
        mimetype: mimetype === '' ? null : hexText(mimetype),
        ...(storage === undefined ? { storageHex: storageHex.toLowerCase() } : {}),
        ...(path === undefined ? { pathHex: pathHex.toLowerCase() } : {}),
    };
}
/** A hex line each: the decoded values (the home storage query's output). */
function parseHexLines(stdout) {
    return stdout
        .split('\n')
        .map((line) => line.replace(/\r$/, '').trim())
        .filter((line) => line !== '')
        .map((line) => {
        if (!/^(?:[0-9A-Fa-f]{2})*$/.test(line))
            throw new BackupError(`Unexpected line (expected hex digits): '${line.slice(0, 200)}'`);
        return Buffer.from(line, 'hex').toString('utf8');
    });
}
/** The users of home storages (`home::USER`), from their storage ids. Pure. */
function homeStorageUsers(ids) {
    return ids
        .filter((id) => id.startsWith('home::'))
        .map((id) => id.slice('home::'.length))
        .sort();
}

;// CONCATENATED MODULE: ./src/database/mysql.ts
// MySQL and MariaDB: mysqldump --single-transaction (mariadb-dump where mysqldump is gone).



/**
 * The longest `password=...` line an option file may hold: the client reads option files
 * in 4 KiB lines, so a longer line is cut and its tail read as an option of its own
 * (measured: 4,094 bytes pass with MariaDB 10.11). Kept below that, for other builds.
 */
const OPTION_LINE_LIMIT = 4000;
/**
 * How the password reaches the client: a `[client]` option file on fd 3 (the option must
 * come first in argv), or, for a password too long for an option-file line, MYSQL_PWD in
 * the client's environment only.
 */
function passwordDelivery(password) {
    const value = mysqlOptionValue(password);
    if (Buffer.byteLength(`password=${value}`) <= OPTION_LINE_LIMIT)
        return {
            options: ['--defaults-extra-file=/dev/fd/3'],
            delivery: 'mysql-option-file',
            secret: value,
        };
    return { options: [], delivery: 'mysql-pwd', secret: password };
}
/** Where the server is and who logs in: the same for the dump and the check. */
function connectionOptions(connection) {
    const argv = [];
    if (connection.host)
        argv.push(`--host=${connection.host}`);
    else if (!connection.socket)
        argv.push('--host=localhost');
    if (connection.port !== undefined)
        argv.push(`--port=${connection.port}`);
    if (connection.socket)
        argv.push(`--socket=${connection.socket}`);
    argv.push(`--user=${connection.user}`);
    return argv;
}
/** The command-line client that comes with the dump tool (mariadb beside mariadb-dump). */
function clientOf(tool) {
    return tool.program === 'mariadb-dump' ? 'mariadb' : 'mysql';
}
function serverName(connection) {
    return `${connection.host ?? connection.socket ?? 'localhost'}${connection.port ? `:${connection.port}` : ''}`;
}
function explainFailure(stderr, connection) {
    if (/Access denied/i.test(stderr))
        return `MySQL refused user '${connection.user}' (access denied): wrong password or missing rights on '${connection.name}'.`;
    if (/Unknown database/i.test(stderr))
        return `MySQL has no database '${connection.name}'.`;
    // A lost connection during the handshake is a server that never answered.
    if (/Can't connect|Unknown MySQL server host|handshake|initial communication packet/i.test(stderr))
        return `Could not reach the MySQL server ${serverName(connection)} (is it running?).`;
    // Reached, then lost: the session was killed or the server went down while it worked.
    if (/Lost connection|server has gone away/i.test(stderr))
        return `The MySQL server ${serverName(connection)} closed the connection while it was in use (the session was killed, or the server stopped).`;
    return undefined;
}
/** A MySQL identifier, backquoted. Pure. */
function mysqlIdentifier(name) {
    return `\`${name.replaceAll('`', '``')}\``;
}
/** A MySQL string literal (the scripts set a sql_mode in which backslash escapes hold). Pure. */
function mysqlString(value) {
    return `'${value.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}
/** Every script starts from a known sql_mode: backslash escapes on, strict. */
const KNOWN_MODE = "SET SESSION sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION';";
/** The client run with a connection's credentials on one database (or none: the admin). */
function clientCommand(client, connection, database) {
    const { options, delivery, secret } = passwordDelivery(connection.password);
    const argv = [
        client,
        ...options,
        '--batch',
        '--skip-column-names',
        '--connect-timeout=15',
        `--default-character-set=${connection.utf8mb4 ? 'utf8mb4' : 'utf8'}`,
        ...connectionOptions(connection),
        ...(database !== undefined ? ['--', database] : []),
    ];
    return { program: client, argv, delivery, secret };
}
/** The client running one statement in the instance's database (batch output, no header). */
function queryCommand(program, connection, sql) {
    const { options, delivery, secret } = passwordDelivery(connection.password);
    const argv = [
        program,
        ...options,
        '--batch',
        '--skip-column-names',
        '--connect-timeout=15',
        ...connectionOptions(connection),
        `--execute=${sql}`,
        '--',
        connection.name,
    ];
    return { program, argv, delivery, secret };
}
function adminConnection({ connection, admin }) {
    return { ...connection, user: admin.user, password: admin.password };
}
/**
 * Where the instance's user logs in from, for the accounts the admin creates: the socket
 * (and `localhost`) means 'localhost'; a loopback address is seen as 'localhost' or the
 * address itself; any other server sees the web server's address, so any host.
 */
function accountHosts(connection) {
    const host = connection.host;
    if (!host || host === 'localhost')
        return ['localhost'];
    if (host === '127.0.0.1' || host === '::1')
        return ['localhost', host];
    return ['%'];
}
/** Drops every object of one type whose name starts with the prefix, in one statement. */
function dropAllOf(kind, prefix) {
    const type = kind === 'VIEW' ? 'VIEW' : 'BASE TABLE';
    return [
        `SET @names = (SELECT GROUP_CONCAT(CONCAT('\`', REPLACE(table_name, '\`', '\`\`'), '\`')) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = '${type}' AND LEFT(table_name, CHAR_LENGTH(${mysqlString(prefix)})) = ${mysqlString(prefix)});`,
        `SET @drop = IF(@names IS NULL, 'DO 0', CONCAT('DROP ${kind} ', @names));`,
        'PREPARE owncloud_restore_drop FROM @drop;',
        'EXECUTE owncloud_restore_drop;',
        'DEALLOCATE PREPARE owncloud_restore_drop;',
    ].join('\n');
}
/**
 * Counts every prefixed base table of the current database in one statement: the server
 * builds `SELECT 'HEXNAME', COUNT(*) FROM \`name\` UNION ALL ...` (backticks in a name
 * doubled) and runs it as a prepared statement. The prefix is compared byte by byte (no LIKE
 * pattern, no collation); GROUP_CONCAT's default limit of 1 KiB would cut the statement.
 */
function rowCountsSql(tablePrefix) {
    const prefix = `X'${prefixHex(tablePrefix)}'`;
    return [
        'SET SESSION group_concat_max_len = 67108864',
        "SET @owncloud_backup_counts = (SELECT GROUP_CONCAT(CONCAT('SELECT ''', HEX(table_name), ''', COUNT(*) FROM `', REPLACE(table_name, '`', '``'), '`') ORDER BY table_name SEPARATOR ' UNION ALL ') FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' AND " +
            `LEFT(CAST(table_name AS BINARY), LENGTH(${prefix})) = ${prefix})`,
        "SET @owncloud_backup_counts = COALESCE(@owncloud_backup_counts, 'SELECT 1, 1 FROM DUAL WHERE FALSE')",
        'PREPARE owncloud_backup_counts FROM @owncloud_backup_counts',
        'EXECUTE owncloud_backup_counts',
        'DEALLOCATE PREPARE owncloud_backup_counts',
    ].join('; ');
}
/** The encryption settings from appconfig, hex columns (see ENCRYPTION_SETTINGS). */
function encryptionStateSql(tablePrefix) {
    const wanted = ENCRYPTION_SETTINGS.map(([app, key]) => `(appid = '${app}' AND configkey = '${key}')`);
    return `SELECT HEX(appid), HEX(configkey), IFNULL(HEX(configvalue), '') FROM ${mysqlIdentifier(`${tablePrefix}appconfig`)} WHERE ${wanted.join(' OR ')}`;
}
/**
 * Every encrypted file cache row, in fileid order: separate columns (the batch output
 * escapes a tab inside a value, not the tabs between columns), names in hex, '' for NULL.
 */
function encryptedFilesSql(tablePrefix) {
    const t = (name) => mysqlIdentifier(`${tablePrefix}${name}`);
    return ("SELECT HEX(s.id), HEX(f.path), f.fileid, f.encrypted, IFNULL(f.size, ''), IFNULL(f.unencrypted_size, ''), IFNULL(HEX(m.mimetype), '') " +
        `FROM ${t('filecache')} f JOIN ${t('storages')} s ON s.numeric_id = f.storage LEFT JOIN ${t('mimetypes')} m ON m.id = f.mimetype ` +
        'WHERE f.encrypted <> 0 ORDER BY f.fileid');
}
const mysql = {
    type: 'mysql',
    programs: ['mysqldump', 'mariadb-dump'],
    restoreHint: 'mysql -e "CREATE DATABASE \\`{dbName}\\` CHARACTER SET {charset} COLLATE {charset}_general_ci" && set -o pipefail && {decompress} -dc {dump} | mysql {db}',
    dumpCommand({ connection, tool }) {
        const { options, delivery, secret } = passwordDelivery(connection.password);
        const argv = [
            tool.program,
            ...options,
            '--single-transaction',
            '--no-tablespaces',
            '--hex-blob',
            `--default-character-set=${connection.utf8mb4 ? 'utf8mb4' : 'utf8'}`,
            ...connectionOptions(connection),
            '--',
            connection.name,
        ];
        return { argv, delivery, secret };
    },
    checkCommand({ connection, tool }) {
        return queryCommand(clientOf(tool), connection, 'SELECT 1');
    },
    checkProblem(result, { connection, tool }) {
        if (result.exitCode === 0 && result.stdout.trim() === '1')
            return undefined;
        return (explainFailure(result.stderr, connection) ??
            `${clientOf(tool)} could not query '${connection.name}' on the MySQL server ${serverName(connection)} (exit ${result.exitCode}): ${stderrTail(result.stderr) || 'no message'}`);
    },
    checkTail(tail) {
        return /-- Dump completed/.test(tail)
            ? undefined
            : "the dump does not end with mysqldump's '-- Dump completed' line: it was cut short";
    },
    explainFailure,
    clients: ['mariadb', 'mysql'],
    scriptCommand({ connection, client }) {
        return clientCommand(client, connection, connection.name);
    },
    identifier: mysqlIdentifier,
    textFromHex: (hex) => `CONVERT(X'${hex}' USING utf8mb4)`,
    loadCommand({ connection, client }) {
        const { argv, delivery, secret } = clientCommand(client, connection, connection.name);
        return { argv, delivery, secret };
    },
    resetStep(context) {
        const { connection, client, admin } = context;
        if (admin) {
            const charset = connection.utf8mb4 ? 'utf8mb4' : 'utf8';
            const accounts = accountHosts(connection).map((from) => `${mysqlString(connection.user)}@${mysqlString(from)}`);
            const db = mysqlIdentifier(connection.name);
            return {
                command: clientCommand(client, adminConnection(context), undefined),
                sql: [
                    KNOWN_MODE,
                    `DROP DATABASE IF EXISTS ${db};`,
                    `CREATE DATABASE ${db} CHARACTER SET ${charset} COLLATE ${charset}_general_ci;`,
                    // An existing account keeps its password; a missing one (a new host) is created.
                    ...accounts.flatMap((account) => [
                        `CREATE USER IF NOT EXISTS ${account} IDENTIFIED BY ${mysqlString(connection.password)};`,
                        `GRANT ALL PRIVILEGES ON ${db}.* TO ${account};`,
                    ]),
                    '',
                ].join('\n'),
                summary: `dropped and recreated the database '${connection.name}' (${charset}) as ${admin.user}`,
            };
        }
        return {
            command: clientCommand(client, connection, connection.name),
            sql: [
                KNOWN_MODE,
                'SET SESSION group_concat_max_len = 67108864;',
                'SET FOREIGN_KEY_CHECKS = 0;',
                dropAllOf('VIEW', connection.tablePrefix),
                dropAllOf('TABLE', connection.tablePrefix),
                '',
            ].join('\n'),
            summary: `emptied the database '${connection.name}' as its user ${connection.user} (every table and view starting with '${connection.tablePrefix}' dropped; no db-admin-user given)`,
        };
    },
    adminCheckCommand(context) {
        const command = clientCommand(context.client, adminConnection(context), undefined);
        return { ...command, argv: [...command.argv, '--execute=SELECT 1'] };
    },
    rowCountsCommand({ connection, tool }) {
        return queryCommand(clientOf(tool), connection, rowCountsSql(connection.tablePrefix));
    },
    parseRowCounts: parseRowCountLines,
    encryptionStateCommand({ connection, tool }) {
        return queryCommand(clientOf(tool), connection, encryptionStateSql(connection.tablePrefix));
    },
    encryptedFilesCommand({ connection, tool }) {
        const command = queryCommand(clientOf(tool), connection, encryptedFilesSql(connection.tablePrefix));
        // --quick: row by row, instead of the whole result held in the client's memory first.
        const at = command.argv.indexOf('--batch');
        command.argv.splice(at + 1, 0, '--quick');
        return command;
    },
    throwawayPrograms: [
        { role: 'server', names: ['mariadbd', 'mysqld'] },
        { role: 'init', names: ['mariadb-install-db', 'mysql_install_db'], optional: true },
        { role: 'client', names: ['mariadb', 'mysql'] },
    ],
    throwawayDirs: ['/usr/sbin', '/usr/libexec', '/usr/local/mysql/bin', '/usr/local/bin'],
    throwawaySetup: throwawayServer,
    homeStoragesCommand({ connection, tool }) {
        const table = mysqlIdentifier(`${connection.tablePrefix}storages`);
        return queryCommand(clientOf(tool), connection, `SELECT HEX(id) FROM ${table} WHERE LEFT(id, 6) = 'home::' ORDER BY id`);
    },
};
/** MariaDB's first dump line since 10.5.25: a command for its own client that MySQL's refuses. */
const SANDBOX_LINE = /^\/\*M?!999999\\- enable the sandbox mode \*\/$/;
/**
 * A throwaway MariaDB or MySQL server on a private socket only (no TCP), without grant
 * tables: nobody but this user (and root) can reach the socket in its 0700 directory, so no
 * password is needed. MariaDB's data directory comes from mariadb-install-db, MySQL 8's
 * from `mysqld --initialize-insecure`. Pure.
 */
function throwawayServer(input) {
    const { programs, serverVersion, dir, database, root } = input;
    const server = programs.server;
    const client = programs.client;
    const mariadb = /MariaDB/i.test(serverVersion);
    const version = /\bVer\s+(\S+)/.exec(serverVersion)?.[1] ?? serverVersion.trim();
    const dataDir = `${dir}/data`;
    const socket = `${dir}/mysqld.sock`;
    const asRoot = root ? ['--user=root'] : [];
    let init;
    let missing;
    if (!mariadb)
        init = [
            [
                server,
                '--no-defaults',
                '--initialize-insecure',
                `--datadir=${dataDir}`,
                `--tmpdir=${dir}`,
                ...asRoot,
            ],
        ];
    else if (programs.init)
        init = [
            [
                programs.init,
                '--no-defaults',
                `--datadir=${dataDir}`,
                '--auth-root-authentication-method=socket',
                '--skip-test-db',
                // Passed on to the bootstrapping server: its temporary tables stay in the private dir.
                `--tmpdir=${dir}`,
                ...asRoot,
            ],
        ];
    else {
        init = [];
        missing = 'mariadb-install-db/mysql_install_db';
    }
    const clientLogin = [client, '--no-defaults', `--socket=${socket}`, '--user=root', '--batch'];
    const charset = database.utf8mb4 ? 'utf8mb4' : 'utf8';
    return {
        server: `${server.split('/').pop()} ${version}${mariadb && !/MariaDB/i.test(version) ? ' (MariaDB)' : ''}`,
        init,
        ...(missing ? { missing } : {}),
        serverArgv: [
            server,
            '--no-defaults',
            `--datadir=${dataDir}`,
            `--socket=${socket}`,
            `--pid-file=${dir}/mysqld.pid`,
            `--tmpdir=${dir}`,
            '--skip-networking',
            '--skip-grant-tables',
            '--skip-log-bin',
            '--skip-performance-schema',
            '--innodb-buffer-pool-size=64M',
            ...(mariadb ? [] : ['--mysqlx=OFF']),
            ...asRoot,
        ],
        ready: [...clientLogin, '--skip-column-names', '--execute=SELECT 1'],
        prepare: {
            argv: clientLogin,
            sql: `CREATE DATABASE restore_test CHARACTER SET ${charset} COLLATE ${charset}_general_ci;\n`,
        },
        connection: {
            type: 'mysql',
            name: 'restore_test',
            socket,
            user: 'root',
            password: '',
            tablePrefix: database.tablePrefix,
            utf8mb4: database.utf8mb4,
        },
        client,
        tool: { program: client.endsWith('/mariadb') ? 'mariadb-dump' : 'mysqldump', version: '' },
        ...(mariadb ? {} : { dropLines: SANDBOX_LINE }),
    };
}

;// CONCATENATED MODULE: ./src/database/pgsql.ts
// PostgreSQL: the host's own pg_dump (its version matches the server), never prompting.


/**
 * The database name as libpq's `--dbname` option: libpq reads a bare name containing `=`
 * as a connection string (which could name another server), so the name always travels
 * as the one `dbname` value of a connection string, single-quoted with `\` and `'` escaped.
 */
function dbnameOption(name) {
    return `--dbname=dbname='${name.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}
/** Environment and connection options shared by pg_dump and the check's psql. */
function connectionArgv(program, connection) {
    const argv = ['env', 'PGCONNECT_TIMEOUT=15', 'PGAPPNAME=owncloud-backup', program];
    argv.push('--no-password');
    const host = connection.socket ?? connection.host;
    if (host)
        argv.push(`--host=${host}`);
    if (connection.port !== undefined)
        argv.push(`--port=${connection.port}`);
    argv.push(`--username=${connection.user}`, dbnameOption(connection.name));
    return argv;
}
function pgsql_serverName(connection) {
    return `${connection.socket ?? connection.host ?? 'on the default socket'}${connection.port ? `:${connection.port}` : ''}`;
}
function pgsql_explainFailure(stderr, connection) {
    if (/password authentication failed|no password supplied/i.test(stderr))
        return `PostgreSQL refused user '${connection.user}' (password authentication failed).`;
    if (/database ".*" does not exist/i.test(stderr))
        return `PostgreSQL has no database '${connection.name}'.`;
    if (/permission denied/i.test(stderr))
        return `User '${connection.user}' may not read every table of '${connection.name}' (permission denied).`;
    if (/could not connect|Connection refused|timeout expired|server closed the connection|terminating connection/i.test(stderr))
        return `Could not reach the PostgreSQL server ${pgsql_serverName(connection)} (is it running?), or it closed the connection.`;
    return undefined;
}
/** A PostgreSQL identifier, double-quoted. Pure. */
function pgIdentifier(name) {
    return `"${name.replaceAll('"', '""')}"`;
}
/** A PostgreSQL string literal (the scripts set standard_conforming_strings on). Pure. */
function pgString(value) {
    return `'${value.replaceAll("'", "''")}'`;
}
/** psql reading a script on stdin, stopping at the first error. */
function psqlCommand(connection, extra = []) {
    const argv = [
        ...connectionArgv('psql', connection),
        '--no-psqlrc',
        '--quiet',
        '--set=ON_ERROR_STOP=1',
        '--output=/dev/null',
        ...extra,
    ];
    return { program: 'psql', argv, delivery: 'pgpassword', secret: connection.password };
}
/** psql running the given commands, printing bare values one row a line. */
function pgsql_queryCommand(connection, commands) {
    const argv = [
        ...connectionArgv('psql', connection),
        '--no-psqlrc',
        '--quiet',
        '--tuples-only',
        '--no-align',
        ...commands,
    ];
    return { program: 'psql', argv, delivery: 'pgpassword', secret: connection.password };
}
function pgsql_adminConnection({ connection, admin }) {
    return { ...connection, name: 'postgres', user: admin.user, password: admin.password };
}
const KNOWN_SETTINGS = 'SET standard_conforming_strings = on;';
/**
 * Counts every prefixed base table of the current schema in one statement: query_to_xml runs
 * `SELECT count(*) FROM schema.name` for each (format's %I quotes the names), inside one
 * REPEATABLE READ transaction so that all counts see the same moment. The prefix travels as
 * hex and is compared as a string prefix (no LIKE pattern).
 */
function pgsql_rowCountsSql(tablePrefix) {
    const prefix = `convert_from(decode('${prefixHex(tablePrefix)}', 'hex'), 'UTF8')`;
    return ("SELECT encode(convert_to(table_name, 'UTF8'), 'hex') || E'\\t' || " +
        "(xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I', table_schema, table_name), false, true, '')))[1]::text " +
        "FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' " +
        `AND left(table_name, length(${prefix})) = ${prefix} ORDER BY table_name`);
}
const hexOf = (expression) => `encode(convert_to(${expression}, 'UTF8'), 'hex')`;
/** The encryption settings from appconfig, one hex line each (see ENCRYPTION_SETTINGS). */
function pgsql_encryptionStateSql(tablePrefix) {
    const wanted = ENCRYPTION_SETTINGS.map(([app, key]) => `(appid = '${app}' AND configkey = '${key}')`);
    return (`SELECT ${hexOf('appid')} || E'\\t' || ${hexOf('configkey')} || E'\\t' || coalesce(${hexOf('configvalue')}, '') ` +
        `FROM ${pgIdentifier(`${tablePrefix}appconfig`)} WHERE ${wanted.join(' OR ')}`);
}
/** Every encrypted file cache row, one tab-separated line each, in fileid order. */
function pgsql_encryptedFilesSql(tablePrefix) {
    const t = (name) => pgIdentifier(`${tablePrefix}${name}`);
    const fields = [
        hexOf('s.id'),
        hexOf('f.path'),
        'f.fileid::text',
        'f.encrypted::text',
        "coalesce(f.size::text, '')",
        "coalesce(f.unencrypted_size::text, '')",
        `coalesce(${hexOf('m.mimetype')}, '')`,
    ];
    return (`SELECT ${fields.join(" || E'\\t' || ")} ` +
        `FROM ${t('filecache')} f JOIN ${t('storages')} s ON s.numeric_id = f.storage LEFT JOIN ${t('mimetypes')} m ON m.id = f.mimetype ` +
        'WHERE f.encrypted <> 0 ORDER BY f.fileid');
}
const pgsql = {
    type: 'pgsql',
    programs: ['pg_dump'],
    restoreHint: 'runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -c "CREATE DATABASE \\"{dbName}\\" OWNER \\"{dbUser}\\" ENCODING \'UTF8\' TEMPLATE template0" && set -o pipefail && {decompress} -dc {dump} | runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d {db} >/dev/null',
    dumpCommand({ connection, tool }) {
        const argv = [...connectionArgv(tool.program, connection), '--format=plain'];
        return { argv, delivery: 'pgpassword', secret: connection.password };
    },
    checkCommand({ connection }) {
        // psql comes with pg_dump (one client package; Debian's wrapper picks the same version).
        return pgsql_queryCommand(connection, ['--command=SELECT 1']);
    },
    checkProblem(result, { connection }) {
        if (result.exitCode === 0 && result.stdout.trim() === '1')
            return undefined;
        return (pgsql_explainFailure(result.stderr, connection) ??
            `psql could not query '${connection.name}' on the PostgreSQL server ${pgsql_serverName(connection)} (exit ${result.exitCode}): ${stderrTail(result.stderr) || 'no message'}`);
    },
    checkTail(tail) {
        return /-- PostgreSQL database dump complete/.test(tail)
            ? undefined
            : "the dump does not end with pg_dump's 'PostgreSQL database dump complete' line: it was cut short";
    },
    explainFailure: pgsql_explainFailure,
    clients: ['psql'],
    // pg_dump names the owner of every object; loaded by another user, those lines must go.
    foreignOwnerLine: /^ALTER [A-Z ]+ \S.* OWNER TO \S+;$/,
    scriptCommand({ connection }) {
        return pgsql_queryCommand(connection, ['--set=ON_ERROR_STOP=1', '--field-separator=\t']);
    },
    identifier: pgIdentifier,
    textFromHex: (hex) => `convert_from(decode('${hex}', 'hex'), 'UTF8')`,
    loadCommand({ connection }) {
        const { argv, delivery, secret } = psqlCommand(connection, ['--single-transaction']);
        return { argv, delivery, secret };
    },
    resetStep(context) {
        const { connection, admin } = context;
        if (admin) {
            const db = pgIdentifier(connection.name);
            const user = pgString(connection.user);
            return {
                command: psqlCommand(pgsql_adminConnection(context)),
                sql: [
                    KNOWN_SETTINGS,
                    // WITH (FORCE) (PostgreSQL 13 and later) ends the sessions still open on it.
                    "SELECT current_setting('server_version_num')::int >= 130000 AS owncloud_force \\gset",
                    '\\if :owncloud_force',
                    `DROP DATABASE IF EXISTS ${db} WITH (FORCE);`,
                    '\\else',
                    `DROP DATABASE IF EXISTS ${db};`,
                    '\\endif',
                    `SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', ${user}, ${pgString(connection.password)}) WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ${user}) \\gexec`,
                    `CREATE DATABASE ${db} OWNER ${pgIdentifier(connection.user)} ENCODING 'UTF8' TEMPLATE template0;`,
                    '',
                ].join('\n'),
                summary: `dropped and recreated the database '${connection.name}' (UTF8, owned by ${connection.user}) as ${admin.user}`,
            };
        }
        const prefix = pgString(connection.tablePrefix);
        return {
            command: psqlCommand(connection),
            sql: [
                KNOWN_SETTINGS,
                // Views first, then tables (their sequences go with them), then what is left.
                `SELECT format('DROP %s IF EXISTS %I.%I CASCADE', CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND left(c.relname, length(${prefix})) = ${prefix} ORDER BY CASE c.relkind WHEN 'v' THEN 0 WHEN 'm' THEN 1 WHEN 'S' THEN 3 ELSE 2 END, c.relname \\gexec`,
                '',
            ].join('\n'),
            summary: `emptied the database '${connection.name}' as its user ${connection.user} (every table, view and sequence starting with '${connection.tablePrefix}' dropped; no db-admin-user given)`,
        };
    },
    adminCheckCommand(context) {
        return pgsql_queryCommand(pgsql_adminConnection(context), ['--command=SELECT 1']);
    },
    rowCountsCommand({ connection }) {
        return pgsql_queryCommand(connection, [
            '--set=ON_ERROR_STOP=1',
            '--command=BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
            `--command=${pgsql_rowCountsSql(connection.tablePrefix)}`,
        ]);
    },
    parseRowCounts: parseRowCountLines,
    encryptionStateCommand({ connection }) {
        return pgsql_queryCommand(connection, [
            '--set=ON_ERROR_STOP=1',
            `--command=${pgsql_encryptionStateSql(connection.tablePrefix)}`,
        ]);
    },
    encryptedFilesCommand({ connection }) {
        // FETCH_COUNT: psql reads through a cursor, so the rows stream instead of being held whole.
        return pgsql_queryCommand(connection, [
            '--set=ON_ERROR_STOP=1',
            '--set=FETCH_COUNT=10000',
            `--command=${pgsql_encryptedFilesSql(connection.tablePrefix)}`,
        ]);
    },
    throwawayPrograms: [
        { role: 'server', names: ['postgres'] },
        { role: 'init', names: ['initdb'] },
        { role: 'client', names: ['psql'] },
    ],
    // Debian and Ubuntu keep the server programs of each major version apart; RHEL too.
    throwawayDirs: ['/usr/lib/postgresql/*/bin', '/usr/pgsql-*/bin', '/usr/local/pgsql/bin'],
    throwawaySetup: pgsql_throwawayServer,
    throwawayVersionProblem(serverVersion, dumpToolVersion) {
        const major = (text) => /(\d+)(?:\.\d+)*/.exec(text)?.[1];
        const server = major(serverVersion);
        const dump = major(dumpToolVersion);
        if (!server || !dump || Number(server) >= Number(dump))
            return undefined;
        return `the runner's postgres ${server} is older than the pg_dump ${dump} the dump was made with (install PostgreSQL ${dump} on the runner)`;
    },
    homeStoragesCommand({ connection }) {
        const table = pgIdentifier(`${connection.tablePrefix}storages`);
        return pgsql_queryCommand(connection, [
            '--set=ON_ERROR_STOP=1',
            `--command=SELECT encode(convert_to(id, 'UTF8'), 'hex') FROM ${table} WHERE left(id, 6) = 'home::' ORDER BY id`,
        ]);
    },
};
/** The socket's port number: it only names the socket file in the private directory. */
const THROWAWAY_PORT = 5432;
/**
 * A throwaway PostgreSQL server on a private socket directory only (listen_addresses
 * empty: no TCP), trusting local connections: nobody but its owner (and root) can reach the
 * 0700 directory. Its superuser is the instance's database user, so that the dump's
 * `ALTER ... OWNER TO` lines load as they are. Pure.
 */
function pgsql_throwawayServer(input) {
    const { programs, serverVersion, dir, database } = input;
    const server = programs.server;
    const dataDir = `${dir}/data`;
    const version = serverVersion.replace(/^.*?\(PostgreSQL\)\s*/, '').trim() || serverVersion;
    const connection = {
        type: 'pgsql',
        name: 'postgres',
        socket: dir,
        port: THROWAWAY_PORT,
        user: database.user,
        password: '',
        tablePrefix: database.tablePrefix,
        utf8mb4: false,
    };
    return {
        server: `postgres ${version}`,
        init: [
            [
                programs.init,
                '-D',
                dataDir,
                '-U',
                database.user,
                '-E',
                'UTF8',
                '--locale=C',
                '--auth=trust',
                '--no-sync',
            ],
        ],
        serverArgv: [
            server,
            '-D',
            dataDir,
            '-p',
            String(THROWAWAY_PORT),
            '-c',
            'listen_addresses=',
            '-c',
            `unix_socket_directories=${dir}`,
            '-c',
            'fsync=off',
            '-c',
            'full_page_writes=off',
            '-c',
            'synchronous_commit=off',
            '-c',
            'shared_buffers=32MB',
        ],
        ready: [
            programs.client,
            '--no-psqlrc',
            '--no-password',
            `--host=${dir}`,
            `--port=${THROWAWAY_PORT}`,
            `--username=${database.user}`,
            dbnameOption('postgres'),
            '--tuples-only',
            '--no-align',
            '--command=SELECT 1',
        ],
        connection,
        client: programs.client,
        tool: { program: 'pg_dump', version: '' },
    };
}

;// CONCATENATED MODULE: ./src/host/host.ts
// The ownCloud host as the rest of the tool sees it: somewhere to run a command and stream
// its output back, reached locally or over SSH. Nothing above this interface knows which.


/**
 * argv that runs a command as another user on the host: directly when the session already
 * is that user, through runuser when it is root, through non-interactive sudo otherwise.
 */
function asUser(account, user, argv) {
    if (user === account)
        return [...argv];
    if (account === 'root')
        return ['runuser', '-u', user, '--', ...argv];
    return ['sudo', '-n', '-u', user, '--', ...argv];
}
/** The result of a command that reached the host; a failure of the link itself is thrown. */
function reached(host, result) {
    const transport = host.transportFailure(result);
    if (transport)
        throw new LinkError(transport);
    return result;
}
/** Runs a command on the host; a non-zero exit is an error naming what was being done. */
async function mustRun(host, argv, doing, options = {}) {
    const result = reached(host, await host.run(argv, options));
    if (result.exitCode !== 0)
        throw new BackupError(`${doing} failed on ${host.label} (exit ${result.exitCode}): ${stderrTail(result.stderr) || stderrTail(result.stdout) || 'no message'}`);
    return result;
}

;// CONCATENATED MODULE: ./src/database/sqlite.ts
// SQLite: `sqlite3 DB .dump`, as ownCloud's documentation says, but read-only: opened
// read-write, sqlite3 creates an empty database where the file is missing (in the live
// data directory) and dumps it as a success. sqlite3 exits 0 even when the database is
// locked, writing an ERROR comment and `ROLLBACK; -- due to errors`: the dump is judged by
// its content, not the exit code.



/**
 * What the database file is, as the instance's owner sees it, without opening it as a
 * database (so no lock held by ownCloud can stall the check): one word on stdout.
 * Every SQLite 3 database file starts with the 16 bytes `SQLite format 3\0`.
 */
const CLASSIFY_FILE = `
if [ ! -e "$1" ]; then echo missing
elif [ ! -f "$1" ]; then echo not-a-file
elif [ ! -r "$1" ]; then echo unreadable
elif [ ! -s "$1" ]; then echo empty
elif [ "$(head -c 15 -- "$1")" = "SQLite format 3" ]; then echo sqlite
else echo other
fi
`.trim();
const CHECK_NAMES = 'check dbname and datadirectory in config.php (or the db-name and data-dir inputs)';
/**
 * SQLite has no dynamic SQL: the first sqlite3 builds the counting statement
 * (`SELECT 'HEXNAME' || char(9) || count(*) FROM "name" UNION ALL ...`, double quotes in a
 * name doubled) and the second runs it. $1 the program, $2 the database file, $3 the query
 * that builds the statement; both read-only, waiting for a lock as the dump does.
 */
const COUNT_ROWS = `
sql=$("$1" -readonly -bail -batch -noheader -cmd '.timeout 5000' "$2" "$3") || exit
printf '%s\\n' "$sql" | "$1" -readonly -bail -batch -noheader -cmd '.timeout 5000' "$2"
`.trim();
/** The query that writes the counting statement for the tables with this prefix. */
function sqlite_rowCountsSql(tablePrefix) {
    const prefix = `CAST(X'${prefixHex(tablePrefix)}' AS TEXT)`;
    return ("SELECT group_concat('SELECT ''' || hex(name) || ''' || char(9) || count(*) FROM \"' || replace(name, '\"', '\"\"') || '\"', ' UNION ALL ') || ';' " +
        "FROM (SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' " +
        `AND substr(name, 1, length(${prefix})) = ${prefix} ORDER BY name)`);
}
/** An identifier, double-quoted. */
function identifier(name) {
    return `"${name.replaceAll('"', '""')}"`;
}
/** A table of the instance, double-quoted. */
function table(tablePrefix, name) {
    return identifier(tablePrefix + name);
}
/** The encryption settings from appconfig, one hex line each (see ENCRYPTION_SETTINGS). */
function sqlite_encryptionStateSql(tablePrefix) {
    const wanted = ENCRYPTION_SETTINGS.map(([app, key]) => `(appid = '${app}' AND configkey = '${key}')`);
    return ("SELECT hex(appid) || char(9) || hex(configkey) || char(9) || ifnull(hex(configvalue), '') " +
        `FROM ${table(tablePrefix, 'appconfig')} WHERE ${wanted.join(' OR ')};`);
}
/** Every encrypted file cache row, one tab-separated line each, in fileid order. */
function sqlite_encryptedFilesSql(tablePrefix) {
    return ("SELECT hex(s.id) || char(9) || hex(f.path) || char(9) || f.fileid || char(9) || f.encrypted || char(9) || ifnull(f.size, '') || char(9) || ifnull(f.unencrypted_size, '') || char(9) || ifnull(hex(m.mimetype), '') " +
        `FROM ${table(tablePrefix, 'filecache')} f JOIN ${table(tablePrefix, 'storages')} s ON s.numeric_id = f.storage ` +
        `LEFT JOIN ${table(tablePrefix, 'mimetypes')} m ON m.id = f.mimetype WHERE f.encrypted <> 0 ORDER BY f.fileid;`);
}
/** sqlite3 running one query read-only, as the instance's owner (as the dump). */
function readOnlyQuery({ connection, tool, account, owner }, sql) {
    const argv = asUser(account, owner, [
        tool.program,
        '-readonly',
        '-bail',
        '-batch',
        '-noheader',
        '-cmd',
        '.timeout 5000',
        connection.file,
        sql,
    ]);
    return { program: tool.program, argv, delivery: 'none', secret: '' };
}
const sqlite = {
    type: 'sqlite',
    programs: ['sqlite3'],
    restoreHint: '(set -o pipefail && umask 027 && {decompress} -dc {dump} | sqlite3 -bail {dbFile})',
    errorMarker: '/**** ERROR:',
    dumpCommand({ connection, tool, account, owner }) {
        // As the instance's owner, so the -shm/-wal files a WAL database needs for reading are
        // not created as root; read-only, so nothing else is ever created or changed.
        const argv = asUser(account, owner, [
            tool.program,
            '-readonly',
            '-bail',
            '-cmd',
            '.timeout 5000',
            connection.file,
            '.dump',
        ]);
        return { argv, delivery: 'none', secret: '' };
    },
    checkCommand({ connection, account, owner }) {
        const argv = asUser(account, owner, ['sh', '-c', CLASSIFY_FILE, 'sh', connection.file]);
        return { program: 'sh', argv, delivery: 'none', secret: '' };
    },
    checkProblem(result, { connection, owner }) {
        const file = `'${connection.file}'`;
        switch (result.stdout.trim()) {
            case 'sqlite':
                return undefined;
            case 'missing':
                return `The SQLite database file ${file} does not exist: ${CHECK_NAMES}.`;
            case 'not-a-file':
                return `The SQLite database ${file} is not a regular file: ${CHECK_NAMES}.`;
            case 'unreadable':
                return `The SQLite database file ${file} is not readable by ${owner}, the instance's owner.`;
            case 'empty':
                return `The SQLite database file ${file} is empty (0 bytes), not the instance's database: ${CHECK_NAMES}.`;
            case 'other':
                return `The file ${file} is not an SQLite 3 database (it lacks the 'SQLite format 3' header): ${CHECK_NAMES}.`;
            default:
                return `Could not check the SQLite database file ${file} (exit ${result.exitCode}): ${stderrTail(result.stderr) || 'no message'}`;
        }
    },
    checkTail(tail) {
        if (tail.includes('ROLLBACK; -- due to errors'))
            return 'sqlite3 rolled the dump back because of errors (is the database locked?)';
        return /COMMIT;\s*$/.test(tail)
            ? undefined
            : "the dump does not end with 'COMMIT;': it was cut short";
    },
    explainFailure(stderr) {
        if (/database is locked/i.test(stderr))
            return 'The SQLite database is locked by another process.';
        if (/unable to open|no such file/i.test(stderr))
            return 'sqlite3 could not open the database file.';
        if (/not a database|malformed/i.test(stderr))
            return 'The SQLite database file is damaged (not a database, or malformed).';
        return undefined;
    },
    clients: ['sqlite3'],
    scriptCommand({ connection, client, account, owner }) {
        // As the web server's user: the database file and its journal are the instance's own.
        const argv = asUser(account, owner, [
            client,
            '-bail',
            '-batch',
            '-noheader',
            '-separator',
            '\t',
            connection.file,
        ]);
        return { program: client, argv, delivery: 'none', secret: '' };
    },
    identifier,
    textFromHex: (hex) => `CAST(X'${hex}' AS TEXT)`,
    loadCommand({ connection, client, account, owner }) {
        // As the web server's user, so the new database file is the instance's own.
        const argv = asUser(account, owner, [client, '-bail', connection.file]);
        return { argv, delivery: 'none', secret: '' };
    },
    resetStep({ connection, account, owner }) {
        const file = connection.file;
        // A new file: the old one and its journals (a -wal from before would be replayed into it).
        const argv = asUser(account, owner, [
            'rm',
            '-f',
            '--',
            file,
            `${file}-wal`,
            `${file}-shm`,
            `${file}-journal`,
        ]);
        return {
            command: { program: 'rm', argv, delivery: 'none', secret: '' },
            sql: '',
            summary: `a new database file ${file}`,
        };
    },
    adminCheckCommand({ client }) {
        return { program: client, argv: ['true'], delivery: 'none', secret: '' };
    },
    rowCountsCommand({ connection, tool, account, owner }) {
        // As the instance's owner and read-only, as the dump (a WAL database needs its -shm file).
        const argv = asUser(account, owner, [
            'sh',
            '-c',
            COUNT_ROWS,
            'sh',
            tool.program,
            connection.file,
            sqlite_rowCountsSql(connection.tablePrefix),
        ]);
        return { program: tool.program, argv, delivery: 'none', secret: '' };
    },
    parseRowCounts: parseRowCountLines,
    encryptionStateCommand(context) {
        return readOnlyQuery(context, sqlite_encryptionStateSql(context.connection.tablePrefix));
    },
    encryptedFilesCommand(context) {
        return readOnlyQuery(context, sqlite_encryptedFilesSql(context.connection.tablePrefix));
    },
    // No server: a new database file in the private directory is the throwaway database.
    throwawayPrograms: [{ role: 'server', names: ['sqlite3'] }],
    throwawayDirs: [],
    throwawaySetup({ programs, serverVersion, dir, database }) {
        const program = programs.server;
        return {
            server: `${program.split('/').pop()} ${serverVersion}`.trim(),
            init: [],
            connection: {
                type: 'sqlite',
                name: 'restore-test',
                user: '',
                password: '',
                tablePrefix: database.tablePrefix,
                utf8mb4: false,
                file: `${dir}/restore-test.db`,
            },
            client: program,
            tool: { program, version: serverVersion },
        };
    },
    homeStoragesCommand(context) {
        return readOnlyQuery(context, `SELECT hex(id) FROM ${table(context.connection.tablePrefix, 'storages')} WHERE substr(id, 1, 6) = 'home::' ORDER BY id`);
    },
};

;// CONCATENATED MODULE: ./src/database/index.ts



const ENGINES = { mysql: mysql, pgsql: pgsql, sqlite: sqlite };
function engineFor(type) {
    return ENGINES[type];
}

;// CONCATENATED MODULE: ./src/host/lock.ts
// One backup at a time per backup directory and per instance. A lock is flock(2) on the
// directory itself (a directory opened read-only can be locked: nothing is created, in the
// instance or anywhere), held by a `flock -n DIR … cat` process whose stdin is our pipe:
// when we end, however we end, or the SSH link dies, cat sees the end of its input and the
// lock goes with it. No lock can outlive its run, so none is ever stale.




/** Marks our holder's argv; the argument after it says who holds the lock. */
const HOLDER_MARK = 'owncloud-backup-lock';
/** Says "locked" once flock holds the lock, then waits for the end of stdin. */
const HOLD = 'echo locked; exec cat >/dev/null';
/** argv that holds the lock on `path` until stdin ends, or exits 1 at once if it is held. */
function lockCommand(path, holder) {
    return ['flock', '-n', path, 'sh', '-c', HOLD, HOLDER_MARK, holder];
}
// The pid holding a flock on the path, from /proc/locks (`1: FLOCK ADVISORY WRITE PID
// MAJ:MIN:INODE …`, device numbers in hex), and that process's argv, one per line.
const WHO_HOLDS = `
d=$(stat -L -c %d -- "$1") && i=$(stat -L -c %i -- "$1") || exit 1
key=$(printf '%02x:%02x:%s' $(( (d >> 8) & 4095 )) $(( (d & 255) | ((d >> 12) & 1048320) )) "$i")
pid=$(awk -v k="$key" '$2 == "FLOCK" && $6 == k { print $5; exit }' /proc/locks)
[ -n "$pid" ] || exit 1
tr '\\0' '\\n' < "/proc/$pid/cmdline"
`.trim();
/** argv that prints the argv of the process holding a flock on `path`. */
function whoHoldsCommand(path) {
    return ['sh', '-c', WHO_HOLDS, 'owncloud-backup', path];
}
/** Who holds our lock, from the holder's argv (one argument per line); undefined if not ours. */
function holderFromArgv(argvLines) {
    const args = argvLines.split('\n');
    const at = args.indexOf(HOLDER_MARK);
    return at >= 0 && args[at + 1] ? args[at + 1] : undefined;
}
/** How this run names itself to a second one: pid, machine and start time. */
function holderName(pid, machine, startedAt) {
    return `owncloud-backup pid ${pid} on ${machine}, started ${startedAt.toISOString()}`;
}
/**
 * Takes the lock on a directory on the host. `wrap` turns the argv into the one to run
 * (e.g. as the instance's owner). Throws `busy(holder)`'s message when another run holds
 * it, naming that run when it can be found.
 */
async function acquireLock(host, path, holder, busy, wrap = (argv) => argv) {
    const holding = host.stream(wrap(lockCommand(path, holder)), { feedStdin: true });
    let output = '';
    const locked = new Promise((resolve) => {
        holding.stdout.on('data', (chunk) => {
            output += chunk.toString();
            if (output.includes('locked\n'))
                resolve(true);
        });
        void holding.done.then(() => resolve(false));
    });
    if (await locked) {
        return {
            release: async () => {
                holding.stdin.end();
                // Normally at once; a dead link must not hold up the end of the run.
                const ended = await Promise.race([
                    holding.done.then(() => true),
                    (0,promises_namespaceObject.setTimeout)(5000, false, { ref: false }),
                ]);
                if (!ended)
                    holding.kill();
            },
        };
    }
    const result = reached(host, await holding.done);
    if (result.exitCode === 127 ||
        /flock: (not found|command not found)|execute flock|flock: No such file/i.test(result.stderr))
        throw new BackupError(`${host.label} lacks flock (util-linux), which keeps two backups from overlapping: install it there.`);
    // flock -n says nothing when the lock is taken: anything on stderr is another failure.
    if (result.exitCode !== 1 || result.stderr.trim() !== '')
        throw new BackupError(`Could not lock ${path} on ${host.label} (flock exit ${result.exitCode}): ${stderrTail(result.stderr)}`);
    const who = await host.run(wrap(whoHoldsCommand(path)));
    throw new BackupError(busy((who.exitCode === 0 && holderFromArgv(who.stdout)) ||
        'another process; it did not say who it is'));
}

;// CONCATENATED MODULE: ./src/host/local.ts


/** The ownCloud server is this machine (a self-hosted runner on it). */
class LocalHost {
    label = `this machine (${(0,external_node_os_namespaceObject.hostname)()})`;
    account = (0,external_node_os_namespaceObject.userInfo)().username;
    run = (argv, options) => runProcess(argv, options);
    stream = (argv, options) => streamProcess(argv, options);
    transportFailure() {
        return undefined;
    }
    async close() { }
}

;// CONCATENATED MODULE: ./src/host/runner.ts
// This machine's side of a backup: rsync receiving the files and tar packing them. Keeping
// the files' numeric owners needs root here; a runner that is not root (GitHub's hosted
// runners) runs these two through passwordless sudo when it can.





async function runnerPrivilege() {
    if (process.getuid?.() === 0)
        return { prefix: [], keepsOwners: true };
    const sudo = await runProcess(['sudo', '-n', 'true']).catch(() => undefined);
    if (sudo?.exitCode === 0) {
        const prefix = ['sudo', '-n', '--'];
        // Children run as root through sudo: only a root watcher can kill them if we die.
        elevateReaper(prefix);
        return { prefix, keepsOwners: true };
    }
    return { prefix: [], keepsOwners: false };
}
/** Removes a tree the elevated commands may have filled with files of other owners. */
async function removeTree(path, privilege) {
    if (privilege.prefix.length === 0) {
        (0,external_node_fs_namespaceObject.rmSync)(path, { recursive: true, force: true });
        return;
    }
    const result = await runProcess([...privilege.prefix, 'rm', '-rf', '--', path], {
        shielded: true,
    });
    if (result.exitCode !== 0)
        throw new BackupError(`Could not remove ${path}: ${stderrTail(result.stderr)}`);
}
/** Whether an error (from Node, or a tool's stderr) means the disk is full. */
function isNoSpace(error) {
    const code = error?.code;
    if (code === 'ENOSPC' || code === 'EDQUOT')
        return true;
    return typeof error === 'string' && /No space left on device|Disk quota exceeded/.test(error);
}
/**
 * The message for a full disk on this machine, with the free space left where `path` is
 * written: the cause, not the compressor's SIGPIPE that follows it.
 */
function noSpaceError(path) {
    let free = '';
    try {
        const stats = (0,external_node_fs_namespaceObject.statfsSync)((0,external_node_path_namespaceObject.dirname)(path));
        free = ` (${stats.bavail * stats.bsize} bytes free)`;
    }
    catch {
        // the message stays useful without the number
    }
    return new BackupError(`No space left on device writing ${path}${free}.`);
}

;// CONCATENATED MODULE: ./src/host/shell.ts
/**
 * The one place where an argv becomes shell text. Needed only where a shell is
 * unavoidable: ssh sends its remote command as a string to the remote user's login shell,
 * and rsync's `-e` is split by rsync itself. Each argument is single-quoted, which makes
 * every byte literal in POSIX shells (sh, dash, bash, zsh): no expansion, no globbing.
 */
function quoteArg(arg) {
    if (arg.includes('\0'))
        throw new Error('an argument contains a NUL byte, which no command line can carry');
    if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(arg))
        return arg;
    return `'${arg.replaceAll("'", `'\\''`)}'`;
}
function quoteCommand(argv) {
    if (argv.length === 0)
        throw new Error('empty command');
    return argv.map(quoteArg).join(' ');
}

;// CONCATENATED MODULE: ./src/host/ssh.ts
// The ownCloud server over SSH (OpenSSH client): a given key, the host key checked
// strictly against given known_hosts lines, one multiplexed connection for every command
// of the run, and keepalives so that a dead link fails in seconds.










/**
 * A path as the value of an ssh `-o` option: ssh splits values on spaces unless they are
 * double-quoted, and expands %-tokens in these paths, so '%' is doubled.
 */
function sshConfigPath(path) {
    if (path.includes('"') || /[\r\n]/.test(path))
        throw new BackupError(`The path '${path}' cannot be given to ssh (it contains a double quote or line break).`);
    const escaped = path.replaceAll('%', '%%');
    return /\s/.test(escaped) ? `"${escaped}"` : escaped;
}
/** sshd's complaint about a user without a home directory says nothing about the command. */
function withoutLoginNoise(result) {
    return {
        ...result,
        stderr: result.stderr.replace(/^Could not chdir to home directory.*\n?/gm, ''),
    };
}
/**
 * What ssh said about a failure, or, when it said nothing, what is known: its exit status
 * and that it gave no reason.
 */
function sshFailureDetail(exitCode, stderr) {
    const said = stderrTail(stderr);
    if (said !== '')
        return said;
    return exitCode === null
        ? 'ssh ended without an exit status and gave no reason (no error output)'
        : `ssh exited with status ${exitCode} and gave no reason (no error output)`;
}
/** Explains ssh's own failures (exit 255) in words an administrator can act on. */
function explainSshFailure(stderr, label) {
    const text = stderr.toLowerCase();
    if (text.includes('remote host identification has changed'))
        return `The host key of ${label} does not match known-hosts: the key changed or someone is in between. Check the server's key and update known-hosts.`;
    if (text.includes('host key verification failed') ||
        text.includes('no matching host key') ||
        text.includes('is not in the trusted hosts'))
        return `The host key of ${label} is not in known-hosts (host key verification failed). Add the server's line, e.g. from: ssh-keyscan -p PORT HOST.`;
    if (text.includes('permission denied'))
        return `${label} refused the SSH key (permission denied). Check ssh-key and that its public key is in the user's authorized_keys.`;
    if (text.includes('connection refused'))
        return `${label} refused the SSH connection (nothing listening on that port?).`;
    if (text.includes('could not resolve hostname'))
        return `The host name of ${label} could not be resolved.`;
    if (text.includes('timed out') || text.includes('timeout'))
        return `The SSH connection to ${label} timed out (the host is unreachable or the link is dead).`;
    if (text.includes('not responding'))
        return `The SSH connection to ${label} timed out (keepalives unanswered: the host or the link is down).`;
    if (text.includes('broken pipe') ||
        text.includes('connection unexpectedly closed') ||
        text.includes('connection closed') ||
        text.includes('connection reset') ||
        text.includes('mux_client'))
        return `The SSH connection to ${label} was lost.`;
    if (text.includes('invalid format') || text.includes('load key'))
        return 'The SSH private key could not be loaded (invalid format). Check ssh-key.';
    return undefined;
}
class SshHost {
    label;
    account = '';
    master;
    /** What the master connection said on stderr, and whether it has ended. */
    masterStderr = '';
    masterEnded = false;
    baseArgs;
    runtimeDir;
    /** Where the control socket lives: the runtime dir, or a short one (sockets have a 108-byte path limit). */
    socketDir;
    target;
    onMaster;
    constructor(target, options) {
        this.target = target;
        this.onMaster = options.onMaster;
        this.label = `${target.user}@${target.host}:${target.port}`;
        this.runtimeDir = options.runtimeDir ?? (0,external_node_fs_namespaceObject.mkdtempSync)((0,external_node_path_namespaceObject.join)((0,external_node_os_namespaceObject.tmpdir)(), 'owncloud-backup-ssh-'));
        // A Unix socket path holds at most 107 bytes and ssh appends ~17 while creating it:
        // under a deep RUNNER_TEMP the socket goes to a short private dir in /tmp instead.
        this.socketDir =
            Buffer.byteLength((0,external_node_path_namespaceObject.join)(this.runtimeDir, 'mux')) <= 80
                ? this.runtimeDir
                : (0,external_node_fs_namespaceObject.mkdtempSync)((0,external_node_path_namespaceObject.join)('/tmp', 'ocb-ssh-'));
        const keyFile = (0,external_node_path_namespaceObject.join)(this.runtimeDir, 'id');
        const knownHostsFile = (0,external_node_path_namespaceObject.join)(this.runtimeDir, 'known_hosts');
        (0,external_node_fs_namespaceObject.writeFileSync)(keyFile, target.privateKey, { mode: 0o600 });
        (0,external_node_fs_namespaceObject.writeFileSync)(knownHostsFile, `${target.knownHosts.join('\n')}\n`, { mode: 0o600 });
        const keepAlive = options.keepAliveSeconds ?? 5;
        // With ssh, the FIRST occurrence of an option wins: nothing may come before these.
        this.baseArgs = [
            '-F',
            '/dev/null',
            '-o',
            'BatchMode=yes',
            '-o',
            'IdentitiesOnly=yes',
            '-o',
            `IdentityFile=${sshConfigPath(keyFile)}`,
            '-o',
            `UserKnownHostsFile=${sshConfigPath(knownHostsFile)}`,
            '-o',
            'GlobalKnownHostsFile=/dev/null',
            '-o',
            'StrictHostKeyChecking=yes',
            '-o',
            'CheckHostIP=no',
            '-o',
            'UpdateHostKeys=no',
            '-o',
            `ConnectTimeout=${options.connectTimeoutSeconds ?? 15}`,
            '-o',
            `ServerAliveInterval=${keepAlive}`,
            '-o',
            'ServerAliveCountMax=3',
            '-o',
            `ControlPath=${sshConfigPath((0,external_node_path_namespaceObject.join)(this.socketDir, 'mux'))}`,
            '-o',
            'LogLevel=ERROR',
            '-p',
            String(target.port),
            '-l',
            target.user,
        ];
    }
    /** Connects (checking the host key) and keeps the connection for the run's commands. */
    static async connect(target, options = {}) {
        const host = new SshHost(target, options);
        try {
            await host.startMaster();
            const whoami = await host.run(['id', '-un']);
            if (whoami.exitCode !== 0)
                throw new BackupError(`Could not run commands on ${host.label}: ${sshFailureDetail(whoami.exitCode, whoami.stderr)}`);
            host.account = whoami.stdout.trim();
            return host;
        }
        catch (error) {
            await host.close();
            throw error;
        }
    }
    async startMaster() {
        // Detached, so a Ctrl-C in a terminal does not cut the link we need to restore
        // maintenance mode; it is ended explicitly in close().
        const master = (0,external_node_child_process_namespaceObject.spawn)('ssh', [
            ...this.baseArgs,
            '-o',
            'ControlMaster=yes',
            '-o',
            'ControlPersist=no',
            '-N',
            this.target.host,
        ], {
            stdio: ['ignore', 'ignore', 'pipe'],
            detached: true,
            env: childEnvironment(process.env),
        });
        this.master = master;
        // A master left running after we die would hold the link open for nothing.
        master.once('exit', killWithUs(master.pid));
        if (master.pid !== undefined)
            this.onMaster?.({ pid: master.pid, socketDir: this.socketDir });
        master.stderr.on('data', (chunk) => {
            this.masterStderr = (this.masterStderr + chunk.toString()).slice(-8192);
        });
        let exitCode = null;
        master.once('exit', (code, signal) => {
            this.masterEnded = true;
            exitCode = code ?? (signal ? 128 + (external_node_os_namespaceObject.constants.signals[signal] ?? 0) : null);
        });
        master.once('error', () => {
            this.masterEnded = true;
        });
        const deadline = Date.now() + 60_000;
        for (;;) {
            if (this.masterEnded) {
                throw new BackupError(explainSshFailure(this.masterStderr, this.label) ??
                    `Could not connect to ${this.label}: ${sshFailureDetail(exitCode, this.masterStderr)}`);
            }
            const check = await runProcess(['ssh', ...this.baseArgs, '-O', 'check', this.target.host]);
            if (check.exitCode === 0)
                return;
            if (Date.now() > deadline)
                throw new BackupError(`Timed out connecting to ${this.label}.`);
            await (0,promises_namespaceObject.setTimeout)(50);
        }
    }
    /** ssh argv for one command over the shared connection (or a new one if it died). */
    commandArgs(argv) {
        return [
            'ssh',
            ...this.baseArgs,
            '-o',
            'ControlMaster=no',
            this.target.host,
            '--',
            quoteCommand(argv),
        ];
    }
    run = async (argv, options) => this.settled(withoutLoginNoise(await runProcess(this.commandArgs(argv), options)));
    stream = (argv, options) => {
        const started = streamProcess(this.commandArgs(argv), options);
        return {
            ...started,
            kill: () => started.kill(),
            done: started.done.then((result) => this.settled(withoutLoginNoise(result))),
        };
    };
    /**
     * A command on the shared connection that dies with it exits 255 without a word, a
     * moment before the master's own exit is seen: wait for that (a few seconds at most, and
     * only then), so that transportFailure can tell a lost connection from other failures.
     */
    async settled(result) {
        if (result.exitCode !== 255 || result.stderr.trim() !== '' || this.masterEnded)
            return result;
        const master = this.master;
        if (master && master.exitCode === null && master.signalCode === null)
            await Promise.race([
                new Promise((resolve) => master.once('exit', resolve)),
                (0,promises_namespaceObject.setTimeout)(5000, undefined, { ref: false }),
            ]);
        return result;
    }
    transportFailure(result) {
        if (result.exitCode === 0)
            return undefined;
        if (result.exitCode === 255)
            return (explainSshFailure(result.stderr, this.label) ??
                // A command on the shared connection often dies silently with it: the master's
                // own words (or its end) tell what happened.
                (this.masterEnded
                    ? (explainSshFailure(this.masterStderr, this.label) ??
                        `The SSH connection to ${this.label} was lost (the connection ended${stderrTail(this.masterStderr) ? `: ${stderrTail(this.masterStderr)}` : ''}).`)
                    : `The SSH connection to ${this.label} failed: ${sshFailureDetail(result.exitCode, result.stderr)}`));
        // rsync reports a dead link with its own exit codes (12, 10) and this wording.
        if (/connection unexpectedly closed|not responding|broken pipe/i.test(result.stderr))
            return explainSshFailure(result.stderr, this.label);
        return undefined;
    }
    async close() {
        const master = this.master;
        if (master && master.exitCode === null && master.signalCode === null) {
            const exited = new Promise((resolve) => master.once('exit', resolve));
            master.kill('SIGTERM');
            await Promise.race([exited, (0,promises_namespaceObject.setTimeout)(2000, undefined, { ref: false })]);
            if (master.exitCode === null && master.signalCode === null)
                master.kill('SIGKILL');
        }
        this.master = undefined;
        (0,external_node_fs_namespaceObject.rmSync)(this.runtimeDir, { recursive: true, force: true });
        (0,external_node_fs_namespaceObject.rmSync)(this.socketDir, { recursive: true, force: true });
    }
}
/**
 * Ends a master connection left behind by a killed process: only if that pid is still an
 * ssh process (pids are reused), then removes its socket directory.
 */
function endOrphanedMaster(master) {
    let ended = false;
    try {
        const cmdline = readFileSync(`/proc/${master.pid}/cmdline`, 'utf8').split('\0');
        if (cmdline[0]?.split('/').pop() === 'ssh' && cmdline.includes('ControlMaster=yes')) {
            process.kill(master.pid, 'SIGTERM');
            ended = true;
        }
    }
    catch {
        // gone already
    }
    rmSync(master.socketDir, { recursive: true, force: true });
    return ended;
}

;// CONCATENATED MODULE: ./src/host/connect.ts


async function connect_openHost(target, secrets, ssh) {
    if (target.kind === 'local')
        return new LocalHost();
    secrets.add(target.privateKey);
    return SshHost.connect(target, ssh);
}
/** openHost as the first step of a run: a log group that says where it connected, as whom. */
async function connectStep(reporter, target, secrets, ssh) {
    return reporter.group('Connect', async () => {
        const opened = await connect_openHost(target, secrets, ssh);
        reporter.info(`Connected to ${opened.label} as ${opened.account}.`);
        return opened;
    });
}

;// CONCATENATED MODULE: ./src/steps/archive.ts
// What every tar of ours is told: the options that create (and, for a restore, extract)
// everything a backup must keep, whoever reads it by hand later.
/** Numeric owners, modes, ACLs and every xattr namespace. */
const TAR_METADATA_FLAGS = ['--numeric-owner', '--acls', '--xattrs', '--xattrs-include=*'];

;// CONCATENATED MODULE: ./src/steps/host-paths.ts
// What paths are on the host, as a given user sees them. Every command over SSH costs a
// round trip and a login shell on the host, so planning asks once, in one command, about
// every path it may need to know (the data directory's markers, app directories, theme
// candidates, extra paths, the top-level paths of the file set), then looks the answers up.



// For each path, NUL-separated: what it is (following a symlink), whether it is a symlink,
// and its real path. `kind` is `test -d`, then a symlink that `test -e` finds, then `test -e`.
const INSPECT = `for p; do
  if [ -d "$p" ]; then k=dir; elif [ -L "$p" ] && [ -e "$p" ]; then k=file-link; elif [ -e "$p" ]; then k=file; else k=missing; fi
  if [ -L "$p" ]; then l=link; else l=; fi
  printf '%s\\0%s\\0%s\\0' "$k" "$l" "$(readlink -f -- "$p")"
done`;
/** What each path is on the host, as `user` sees it, and where it really is: one command. */
async function inspectPaths(host, user, paths) {
    if (paths.length === 0)
        return [];
    const result = reached(host, await host.run(asUser(host.account, user, ['sh', '-c', INSPECT, 'sh', ...paths])));
    const fields = result.stdout.split('\0');
    if (result.exitCode !== 0 || fields.length < paths.length * 3)
        throw new BackupError(`Could not inspect the paths to back up on ${host.label}: ${stderrTail(result.stderr)}`);
    return paths.map((path, i) => ({
        kind: fields[i * 3],
        link: fields[i * 3 + 1] === 'link',
        real: fields[i * 3 + 2] || path,
    }));
}
/**
 * The answers of one inspectPaths call, looked up by path; a path that was not asked about
 * is inspected on its own when needed.
 */
class HostPaths {
    facts = new Map();
    host;
    user;
    constructor(host, user) {
        this.host = host;
        this.user = user;
    }
    /** Asks about all these paths at once (as `user`, who can see into the data directory). */
    static async inspect(host, user, paths) {
        const known = new HostPaths(host, user);
        await known.add(paths);
        return known;
    }
    async add(paths) {
        const unknown = [...new Set(paths)].filter((p) => !this.facts.has(p));
        const found = await inspectPaths(this.host, this.user, unknown);
        unknown.forEach((path, i) => this.facts.set(path, found[i]));
    }
    /** What the path is (inspected now if it was not asked about before). */
    async fact(path) {
        if (!this.facts.has(path))
            await this.add([path]);
        return this.facts.get(path);
    }
    /** What each path is, in one command for those not asked about before. */
    async factsOf(paths) {
        await this.add(paths);
        return paths.map((p) => this.facts.get(p));
    }
    /** `test -e`: exists (a symlink: its target does). */
    async exists(path) {
        return (await this.fact(path)).kind !== 'missing';
    }
    /** `test -d`: a directory (a symlink: to one). */
    async isDir(path) {
        return (await this.fact(path)).kind === 'dir';
    }
}

;// CONCATENATED MODULE: ./src/steps/installation.ts
// Which part of the installation is server code that a reinstall brings back, and which is
// not: the install type (a distribution package owns occ/version.php, or a tarball was
// unpacked), and the app directories with the apps that did not ship with the release
// (app-store apps, which only a backup brings back).




/** The app directory that ships with the server code, relative to the install dir. */
const SHIPPED_APPS_DIR = 'apps';
/** Where app-store apps go when config.php says nothing: ownCloud's and Nextcloud's names. */
const USUAL_APP_DIRS = ['apps-external', 'custom_apps'];
/** A path as a literal dpkg-query --search pattern (it would read * ? [ \ as a glob). */
function dpkgPattern(path) {
    return path.replace(/[*?[\\]/g, '\\$&');
}
/** `dpkg-query --search` output: path → owning package(s). Diversion lines are not owners. */
function parseDpkgSearch(stdout) {
    const owners = new Map();
    for (const line of stdout.split('\n')) {
        if (line === '' || line.startsWith('diversion by '))
            continue;
        const colon = line.indexOf(': ');
        if (colon <= 0)
            continue;
        owners.set(line.slice(colon + 2), line.slice(0, colon));
    }
    return owners;
}
/** Nextcloud's core/shipped.json: the apps that come with the release. */
function parseShippedJson(text) {
    let parsed;
    try {
        parsed = JSON.parse(text);
    }
    catch {
        return undefined;
    }
    if (parsed === null || typeof parsed !== 'object')
        return undefined;
    const names = new Set();
    for (const key of ['shippedApps', 'alwaysEnabled']) {
        const list = parsed[key];
        if (Array.isArray(list))
            for (const name of list)
                if (typeof name === 'string')
                    names.add(name);
    }
    return names.size > 0 ? names : undefined;
}
// For each package manager the host has, a `#NAME` line, then the owners of the paths given
// as `PACKAGE: PATH` lines (dpkg-query --search's form). Arguments: the number of paths, the
// paths as dpkg-query patterns, then the same paths as they are.
const PACKAGE_OWNERS = `n=$1; shift
if command -v rpm >/dev/null 2>&1; then
  echo '#rpm'
  i=0
  for p; do
    i=$((i + 1))
    [ "$i" -gt "$n" ] || continue
    o=$(rpm -qf --queryformat '%{NAME}\\n' -- "$p" 2>/dev/null) && [ -n "$o" ] &&
      printf '%s: %s\\n' "$(printf '%s\\n' "$o" | head -n 1)" "$p"
  done
fi
if command -v dpkg-query >/dev/null 2>&1; then
  echo '#dpkg'
  i=0
  for p; do i=$((i + 1)); if [ "$i" -le "$n" ]; then set -- "$@" "$p"; fi; done
  shift $((n + n))
  dpkg-query --search -- "$@" 2>/dev/null
fi
true`;
/** PACKAGE_OWNERS' output: each package manager found, with its owners (path → package). */
function parsePackageOwners(stdout) {
    const lines = new Map();
    let section;
    for (const line of stdout.split('\n')) {
        if (line === '#dpkg' || line === '#rpm')
            lines.set(line.slice(1), (section = []));
        else
            section?.push(line);
    }
    // Asked in this order: dpkg first, as a Debian system may have rpm too.
    const found = new Map();
    for (const manager of ['dpkg', 'rpm']) {
        const text = lines.get(manager);
        if (text)
            found.set(manager, parseDpkgSearch(text.join('\n')));
    }
    return found;
}
/**
 * Which of these host paths a package owns, asked of every package manager the host has, in
 * one command: manager → (path → package), for the managers found (dpkg first).
 */
async function ownersByManager(host, paths) {
    const result = reached(host, await host.run([
        'sh',
        '-c',
        PACKAGE_OWNERS,
        'sh',
        String(paths.length),
        ...paths.map(dpkgPattern),
        ...paths,
    ]));
    return parsePackageOwners(result.stdout);
}
/** Which of these host paths a package owns: path → package. */
async function packageOwners(host, manager, paths) {
    if (paths.length === 0)
        return new Map();
    if (manager === 'dpkg') {
        // Exit 1 just means some path has no owner; the found ones are on stdout.
        const result = reached(host, await host.run(['dpkg-query', '--search', '--', ...paths.map(dpkgPattern)]));
        const found = parseDpkgSearch(result.stdout);
        return new Map(paths.flatMap((p) => (found.has(p) ? [[p, found.get(p)]] : [])));
    }
    const owners = new Map();
    for (const path of paths) {
        const result = reached(host, await host.run(['rpm', '-qf', '--queryformat', '%{NAME}\\n', '--', path]));
        if (result.exitCode === 0 && result.stdout.trim())
            owners.set(path, result.stdout.trim());
    }
    return owners;
}
/**
 * Package or tarball install: `auto` asks the host's package database (dpkg, else rpm)
 * whether a package owns the installation's occ or version.php.
 */
async function detectInstallType(host, requested, instance, 
/** What the installation's paths are, as its owner sees them (the install dir's real path). */
paths) {
    if (requested === 'tarball')
        return { type: 'tarball', reason: 'install-type: tarball' };
    // As a package database records it: with symlinks resolved.
    const real = (await paths.fact(instance.installDir)).real;
    const candidates = [
        ...new Set([instance.installDir, real].flatMap((dir) => [`${dir}/version.php`, `${dir}/occ`])),
    ];
    const found = await ownersByManager(host, candidates);
    const managers = [...found.keys()];
    for (const [manager, owners] of found) {
        const path = candidates.find((p) => owners.has(p));
        const owner = path === undefined ? undefined : owners.get(path);
        if (path && owner) {
            const how = `${path} belongs to package ${owner} (${manager})`;
            return {
                type: 'package',
                reason: requested === 'package' ? `install-type: package; ${how}` : `detected: ${how}`,
                package: owner,
                manager,
            };
        }
    }
    if (requested === 'package')
        return { type: 'package', reason: 'install-type: package' };
    const asked = managers.length > 0 ? `asked ${managers.join(' and ')}` : 'no dpkg or rpm there';
    return {
        type: 'tarball',
        reason: `detected: no package owns ${instance.installDir}/version.php or occ (${asked})`,
    };
}
// Names in a directory, NUL-terminated, hidden ones too (cd first: the session's working
// directory may be one the owner cannot enter).
const LIST_ENTRIES = `cd -- "$1" || exit 1
for f in * .[!.]* ..?*; do if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\\0' "$f"; fi; done`;
/** Entries of a directory on the host, as its owner sees them. */
async function entriesOf(host, owner, dir) {
    const result = reached(host, await host.run(asUser(host.account, owner, ['sh', '-c', LIST_ENTRIES, 'sh', dir])));
    if (result.exitCode !== 0)
        throw new BackupError(`Could not list the app directory ${dir} on ${host.label}: ${stderrTail(result.stderr)}`);
    return result.stdout.split('\0').filter(Boolean).sort();
}
async function readOnHost(host, owner, path) {
    const result = reached(host, await host.run(asUser(host.account, owner, ['cat', '--', path])));
    return result.exitCode === 0 ? result.stdout : undefined;
}
/** Whether `path` is `dir` or lies below it. */
function isWithin(path, dir) {
    return path === dir || path.startsWith(dir === '/' ? '/' : `${dir}/`);
}
/** Every directory planAppDirs may look at: config.php's apps_paths, apps/ and the usual others. */
function appDirCandidates(instance) {
    return [
        ...instance.appsPaths.map((a) => a.path),
        `${instance.installDir}/${SHIPPED_APPS_DIR}`,
        ...USUAL_APP_DIRS.map((name) => `${instance.installDir}/${name}`),
    ];
}
/**
 * The instance's app directories (config.php's apps_paths, else apps/, plus apps-external/
 * and custom_apps/ when present) and what of each to copy. A tarball install copies the
 * whole installation anyway; a package install copies every app directory but the apps/
 * that ships with the code, and from that one the apps the release did not ship (Nextcloud:
 * not in core/shipped.json; otherwise: not owned by the server's package).
 */
async function planAppDirs(host, instance, kind, warn, 
/** What the app directories are, as the owner sees them (see appDirCandidates). */
paths) {
    const { installDir, owner } = instance;
    const exists = (path) => paths.isDir(path);
    const listed = instance.appsPaths.length > 0
        ? instance.appsPaths.map((a) => ({ ...a, listed: true }))
        : [
            {
                path: `${installDir}/${SHIPPED_APPS_DIR}`,
                url: '/apps',
                writable: false,
                listed: false,
            },
        ];
    for (const name of USUAL_APP_DIRS) {
        const path = `${installDir}/${name}`;
        if (!listed.some((a) => a.path === path) && (await exists(path)))
            listed.push({ path, url: `/${name}`, writable: true, listed: false });
    }
    const plan = { appDirs: [], installPaths: [], absolutePaths: [] };
    for (const dir of listed) {
        const record = {
            path: dir.path,
            listed: dir.listed,
            ...(dir.listed ? { writable: dir.writable } : {}),
        };
        const relative = isWithin(dir.path, installDir)
            ? external_node_path_namespaceObject.posix.relative(installDir, dir.path)
            : undefined;
        if (!(await exists(dir.path))) {
            if (dir.listed)
                warn(`config.php's apps_paths names ${dir.path}, which does not exist.`);
            plan.appDirs.push({ ...record, copied: 'none', reason: 'does not exist' });
            continue;
        }
        if (isWithin(dir.path, instance.dataDir)) {
            plan.appDirs.push({ ...record, copied: 'whole', reason: 'inside the data directory' });
            continue;
        }
        if (relative === '') {
            warn(`config.php's apps_paths names the installation directory itself (${dir.path}).`);
            plan.appDirs.push({
                ...record,
                copied: kind.type === 'tarball' ? 'whole' : 'none',
                reason: 'the installation directory itself',
            });
            continue;
        }
        if (relative === undefined) {
            plan.absolutePaths.push(dir.path);
            plan.appDirs.push({ ...record, copied: 'whole', reason: 'outside the installation' });
            continue;
        }
        if (kind.type === 'tarball') {
            plan.appDirs.push({ ...record, copied: 'whole', reason: 'part of the whole installation' });
            continue;
        }
        if (relative !== SHIPPED_APPS_DIR) {
            plan.installPaths.push(relative);
            plan.appDirs.push({ ...record, copied: 'whole', reason: 'not shipped with the server code' });
            continue;
        }
        // The apps/ of a package install: shipped apps come back with the package, others do not.
        const names = await entriesOf(host, owner, dir.path);
        const shippedJson = await readOnHost(host, owner, `${installDir}/core/shipped.json`);
        const fromRelease = shippedJson === undefined ? undefined : parseShippedJson(shippedJson);
        let shipped;
        let how;
        if (fromRelease) {
            shipped = new Set(names.filter((n) => fromRelease.has(n)));
            how = 'listed in core/shipped.json';
        }
        else if (kind.manager) {
            const manager = kind.manager;
            const owners = await packageOwners(host, manager, names.map((n) => `${dir.path}/${n}`));
            const real = (await paths.fact(dir.path)).real;
            const realOwners = real === dir.path
                ? owners
                : await packageOwners(host, manager, names.map((n) => `${real}/${n}`));
            shipped = new Set(names.filter((n) => owners.has(`${dir.path}/${n}`) || realOwners.has(`${real}/${n}`)));
            how = `owned by package ${kind.package} (${manager})`;
        }
        else {
            warn(`No package manager owns the server code and there is no core/shipped.json: the apps in ${dir.path} cannot be told from the shipped ones, so all of it is left out as server code. Use install-type: tarball to back it up.`);
            plan.appDirs.push({
                ...record,
                copied: 'none',
                shipped: names,
                reason: 'server code (install-type: package)',
            });
            continue;
        }
        const apps = names.filter((n) => !shipped.has(n));
        plan.installPaths.push(...apps.map((n) => `${SHIPPED_APPS_DIR}/${n}`));
        plan.appDirs.push({
            ...record,
            copied: apps.length > 0 ? 'apps' : 'none',
            apps,
            shipped: [...shipped],
            reason: `ships with the server code: the shipped apps (${how}) are left out, the others copied`,
        });
    }
    return plan;
}

;// CONCATENATED MODULE: external "node:crypto"
const external_node_crypto_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:crypto");
;// CONCATENATED MODULE: ./src/steps/age.ts
// Encryption of a backup at rest with age (age-encryption.org/v1): every archive and the
// dump are encrypted to the user's recipients while they are written, by the age tool on
// the runner, so the files are standard age files that `age -d -i KEY FILE` opens by hand.
// Recipients are public keys (`age1…`, or SSH ed25519/RSA public keys, which age accepts);
// the identity that decrypts is a secret: it reaches age as a file (0600, in a private
// directory), never through argv or the environment.






/** The suffix an encrypted file's name gets: `owncloud-files_DATE.tar.zst.age`. */
const AGE_SUFFIX = '.age';
// Bech32: `age1` then 58 characters of its alphabet (32 bytes of key and a checksum).
const X25519 = /^age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$/;
const SSH = /^(ssh-ed25519|ssh-rsa) ([A-Za-z0-9+/]+={0,3})(?: .*)?$/;
/**
 * The recipients in the `encrypt-to` input: one per line (or per repeated option); empty
 * lines and `#` comments are ignored, as in age's recipients files. Pure; each problem is an
 * InputError naming the input and the line.
 */
function parseRecipients(text, label) {
    const recipients = [];
    const lines = text.split(/\r?\n/);
    for (const [index, raw] of lines.entries()) {
        const line = raw.trim();
        if (line === '' || line.startsWith('#'))
            continue;
        const at = lines.length > 1 ? ` (line ${index + 1})` : '';
        if (X25519.test(line)) {
            recipients.push({ type: 'X25519', fingerprint: line, line });
            continue;
        }
        if (/^AGE-SECRET-KEY-/i.test(line))
            throw new InputError(`Invalid ${label}${at}: that is an age secret key (an identity). it takes the public key, the 'age1…' line that age-keygen -y prints; keep the secret key where the backups are restored.`);
        const ssh = SSH.exec(line);
        const blob = ssh ? Buffer.from(ssh[2], 'base64') : undefined;
        if (ssh && blob && sshKeyType(blob) === ssh[1]) {
            recipients.push({
                type: ssh[1],
                fingerprint: `SHA256:${(0,external_node_crypto_namespaceObject.createHash)('sha256').update(blob).digest('base64').replace(/=+$/, '')}`,
                // Without the comment: age needs only the key.
                line: `${ssh[1]} ${ssh[2]}`,
            });
            continue;
        }
        throw new InputError(`Invalid ${label}${at}: '${line.length > 80 ? `${line.slice(0, 77)}...` : line}' is not an age recipient. Expected an age public key ('age1' and 58 more characters, from age-keygen) or an SSH public key ('ssh-ed25519 AAAA…' or 'ssh-rsa AAAA…'), one per line.`);
    }
    if (recipients.length === 0)
        throw new InputError(`Invalid ${label}: no recipient in it. Expected one or more age public keys ('age1…') or SSH public keys, one per line.`);
    return recipients;
}
/** The key type an SSH public key blob names in its first field (e.g. 'ssh-ed25519'). */
function sshKeyType(blob) {
    if (blob.length < 4)
        return undefined;
    const length = blob.readUInt32BE(0);
    if (length > 64 || blob.length < 4 + length)
        return undefined;
    return blob.subarray(4, 4 + length).toString('latin1');
}
/** What the manifest records: recipients without their lines. */
function recipientRecords(recipients) {
    return recipients.map(({ type, fingerprint }) => ({ type, fingerprint }));
}
/** A recipient in words, for logs: `age1abc…xyz` or `ssh-ed25519 SHA256:…`. */
function describeRecipient(record) {
    return record.type === 'X25519'
        ? `${record.fingerprint.slice(0, 12)}…${record.fingerprint.slice(-6)}`
        : `${record.type} ${record.fingerprint}`;
}
/**
 * A private directory on the runner holding age's files for this run: the recipients file
 * an encrypting age reads, and the identity a decrypting age reads. Removed by `dispose`.
 */
class AgeFiles {
    dir;
    /**
     * `parent`: where to make the directory; the action gives the directory its post step
     * removes whatever happens to the main step (so a killed run leaves no key behind).
     */
    constructor(parent = (0,external_node_os_namespaceObject.tmpdir)()) {
        this.dir = (0,external_node_fs_namespaceObject.mkdtempSync)((0,external_node_path_namespaceObject.join)(parent, 'owncloud-backup-age-'));
    }
    /** Writes the recipients file (public keys) and returns its path. */
    recipientsFile(recipients) {
        const path = (0,external_node_path_namespaceObject.join)(this.dir, 'recipients');
        (0,external_node_fs_namespaceObject.writeFileSync)(path, recipients.map((r) => `${r.line}\n`).join(''), { mode: 0o600 });
        return path;
    }
    /** Writes the identity (a secret) where only this user can read it; returns its path. */
    identityFile(identity) {
        const path = (0,external_node_path_namespaceObject.join)(this.dir, 'identity');
        (0,external_node_fs_namespaceObject.writeFileSync)(path, identity.endsWith('\n') ? identity : `${identity}\n`, { mode: 0o600 });
        return path;
    }
    dispose() {
        (0,external_node_fs_namespaceObject.rmSync)(this.dir, { recursive: true, force: true });
    }
}
/** age encrypting stdin to stdout for the recipients in this file. */
function encryptCommand(recipientsFile) {
    return ['age', '--encrypt', '--recipients-file', recipientsFile];
}
/** age decrypting `path` (or stdin) to stdout with the identity in this file. */
function decryptCommand(identityFile, path) {
    return ['age', '--decrypt', '--identity', identityFile, ...(path ? ['--', path] : [])];
}
/** age's complaint in words of this tool: which file, and what to do about it. */
function explainAgeFailure(stderr, exitCode) {
    const said = stderrTail(stderr)
        .split('\n')
        .filter((line) => !line.includes('report unexpected or unhelpful errors'))
        .map((line) => line.replace(/^age: error: /, ''))
        .join(' ')
        .trim() || `age exit ${exitCode}`;
    if (/no identity matched any of the recipients/.test(said))
        return 'the identity given is not one of the recipients it was encrypted to (wrong key)';
    if (/failed to read header|unexpected EOF|premature|truncated/i.test(said))
        return `the encrypted data is cut short (${said})`;
    // age authenticates every 64 KiB chunk: a flipped bit and a cut both end up here.
    if (/failed to decrypt and authenticate|authentication failed|invalid/i.test(said))
        return `the encrypted data is damaged or cut short (${said})`;
    if (/failed to read identity|no identities found|failed to open file.*identity/i.test(said))
        return `the identity could not be used: ${said}`;
    return said;
}
/**
 * Checks, by encrypting nothing, that age runs here and accepts every recipient (a typo in
 * a key's checksum is caught before the host is touched).
 */
async function checkRecipients(recipientsFile, label) {
    await needAge(label);
    const result = await runProcess(encryptCommand(recipientsFile), { input: '' });
    if (result.exitCode === 0)
        return;
    throw new InputError(`Invalid ${label}: age refuses the recipients: ${explainAgeFailure(result.stderr, result.exitCode)}.`);
}
/** Fails with what to install when the age tool is not on this machine. */
async function needAge(label) {
    if ((await runProcess(['sh', '-c', 'command -v age']).then((r) => r.exitCode)) !== 0)
        throw new InputError(`The ${label} needs the age tool on this machine, and it is not installed: install it (Debian/Ubuntu: sudo apt-get install -y age).`);
}
/**
 * Why the identity is not one age can read (`AGE-SECRET-KEY-1…` lines, or an SSH private
 * key), or undefined. Pure: what it decrypts is judged when it is used.
 */
function identityProblem(identity) {
    const lines = identity
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter((l) => l !== '' && !l.startsWith('#'));
    if (lines.length === 0)
        return 'it is empty';
    if (/^-----BEGIN [A-Z ]*PRIVATE KEY-----$/.test(lines[0]))
        return undefined;
    if (lines.every((l) => /^AGE-SECRET-KEY-1[0-9A-Z]{58}$/.test(l)))
        return undefined;
    if (lines.some((l) => X25519.test(l)))
        return "it holds a public key ('age1…'); decrypting needs the secret key ('AGE-SECRET-KEY-1…')";
    return "it is neither an age secret key ('AGE-SECRET-KEY-1…', one per line) nor an SSH private key";
}
/**
 * Runs `work` with the identity (when one is given) in a private file that age reads, and
 * removes the file afterwards, whatever happens.
 */
async function withIdentity(identity, work, parent) {
    if (identity === undefined)
        return work(undefined);
    await needAge('identity');
    const files = new AgeFiles(parent);
    try {
        return await work(files.identityFile(identity));
    }
    finally {
        files.dispose();
    }
}

;// CONCATENATED MODULE: ./src/steps/compress.ts
// Compressing a stream into a file on the runner, hashing the result on the way: every
// byte is read once, nothing is held in memory beyond stream buffers.








const COMPRESSORS = {
    // Multi-threaded; level 3 is zstd's default balance of speed and size.
    zstd: ['zstd', '-T0', '-3', '-q', '-c'],
    gzip: ['gzip', '-6', '-c', '-n'],
};
/** The program that compresses with this method (for preflight checks). */
function compressorProgram(compression) {
    return COMPRESSORS[compression][0];
}
/** The compressor as one command string, for tar's --use-compress-program (split on spaces). */
function compressorCommand(compression) {
    return COMPRESSORS[compression].join(' ');
}
/** Counts and hashes what passes through. */
class Digest extends external_node_stream_namespaceObject.Transform {
    hash = (0,external_node_crypto_namespaceObject.createHash)('sha256');
    size = 0;
    _transform(chunk, _encoding, callback) {
        this.hash.update(chunk);
        this.size += chunk.length;
        this.push(chunk);
        callback();
    }
}
/**
 * Pipes `source` through the compressor (and, with `encryptTo`, age encrypting to the
 * recipients in that file) into `path`: no plaintext byte reaches the disk. Rejects if any
 * part fails; the caller removes the file then.
 */
async function compressToFile(source, compression, path, signal, encryptTo) {
    const options = signal ? { signal } : {};
    const compressor = streamProcess(COMPRESSORS[compression], { ...options, feedStdin: true });
    // age reads the compressor's output pipe itself: those bytes never pass through here. A
    // failed write below stops age, and then the compressor (EPIPE): the exit codes tell.
    const encryptor = encryptTo
        ? streamProcess(encryptCommand(encryptTo), { ...options, stdinFrom: compressor.stdout })
        : undefined;
    const feeding = (0,external_node_stream_promises_namespaceObject.pipeline)(source, compressor.stdin);
    const writing = writeHashed((encryptor ?? compressor).stdout, path);
    const [fed, written, result, sealed] = await Promise.allSettled([
        feeding,
        writing,
        compressor.done,
        encryptor?.done,
    ]);
    // A failed write (a full disk) kills the compressor with SIGPIPE: the write's cause is the
    // one to report. A stream cut short is only the compressor's failure seen from here.
    if (written.status === 'rejected' &&
        written.reason?.code !== 'ERR_STREAM_PREMATURE_CLOSE')
        throw asError(written.reason);
    if (sealed.status === 'fulfilled' && sealed.value && sealed.value.exitCode !== 0)
        throw new BackupError(`age failed (exit ${sealed.value.exitCode}): ${explainAgeFailure(sealed.value.stderr, sealed.value.exitCode)}`);
    if (result.status === 'fulfilled' && result.value.exitCode !== 0)
        throw new BackupError(`${compression} failed (exit ${result.value.exitCode}): ${stderrTail(result.value.stderr)}`);
    if (fed.status === 'rejected')
        throw asError(fed.reason);
    if (result.status === 'rejected')
        throw asError(result.reason);
    if (sealed.status === 'rejected')
        throw asError(sealed.reason);
    if (written.status === 'rejected')
        throw asError(written.reason);
    return written.value;
}
/** Refuses to open an encrypted archive without an identity, naming what to give. */
function missingIdentity(path) {
    return new InputError(`${path.split('/').pop()} is encrypted (age): give the identity that decrypts it (option --identity-file, environment variable OWNCLOUD_BACKUP_IDENTITY, or the action's input 'identity').`);
}
/**
 * The archive's compressed bytes, decrypted here when it is encrypted: what a tar on the
 * host that decompresses by itself reads (the identity never leaves this machine).
 */
function openCompressed(file, signal) {
    if (!file.age) {
        const stream = (0,external_node_fs_namespaceObject.createReadStream)(file.path);
        return {
            stdout: stream,
            // A read error reaches whoever pipes the stream.
            done: Promise.resolve({ ok: true, problem: '' }),
            kill: () => stream.destroy(),
        };
    }
    const identityFile = file.age.identityFile;
    if (identityFile === undefined)
        throw missingIdentity(file.path);
    const decrypting = streamProcess(decryptCommand(identityFile, file.path), signal ? { signal } : {});
    return {
        stdout: decrypting.stdout,
        done: decrypting.done.then((d) => d.exitCode === 0
            ? { ok: true, problem: '' }
            : { ok: false, problem: `decrypting failed: ${explainAgeFailure(d.stderr, d.exitCode)}` }),
        kill: () => decrypting.kill(),
    };
}
/**
 * Opens an archive for reading its content: age (when encrypted) and the decompressor read
 * the file and hand over the plaintext as a stream; nothing is written anywhere.
 */
function openArchive(file, signal) {
    const options = signal ? { signal } : {};
    const decompressor = [compressorProgram(file.compression), '-dc'];
    if (!file.age) {
        const reading = streamProcess([...decompressor, '--', file.path], options);
        return {
            stdout: reading.stdout,
            done: reading.done.then((r) => ({
                ok: r.exitCode === 0,
                problem: r.exitCode === 0
                    ? ''
                    : `decompressing failed (exit ${r.exitCode}): ${stderrTail(r.stderr) || 'no message'}`,
            })),
            kill: () => reading.kill(),
        };
    }
    const identityFile = file.age.identityFile;
    if (identityFile === undefined)
        throw missingIdentity(file.path);
    const decrypting = streamProcess(decryptCommand(identityFile, file.path), options);
    // The decompressor reads age's output pipe itself.
    const decompressing = streamProcess(decompressor, { ...options, stdinFrom: decrypting.stdout });
    return {
        stdout: decompressing.stdout,
        done: Promise.all([decrypting.done, decompressing.done]).then(([d, u]) => d.exitCode !== 0
            ? { ok: false, problem: `decrypting failed: ${explainAgeFailure(d.stderr, d.exitCode)}` }
            : u.exitCode !== 0
                ? {
                    ok: false,
                    problem: `decompressing failed (exit ${u.exitCode}): ${stderrTail(u.stderr) || 'no message'}`,
                }
                : { ok: true, problem: '' }),
        kill: () => {
            decrypting.kill();
            decompressing.kill();
        },
    };
}
/** Writes an (already compressed) stream to `path`, counting and hashing it on the way. */
async function writeHashed(source, path) {
    const digest = new Digest();
    try {
        await (0,external_node_stream_promises_namespaceObject.pipeline)(source, digest, (0,external_node_fs_namespaceObject.createWriteStream)(path, { mode: 0o600 }));
    }
    catch (error) {
        throw isNoSpace(error) ? noSpaceError(path) : error;
    }
    return { path, size: digest.size, sha256: digest.hash.digest('hex') };
}
function asError(reason) {
    return reason instanceof Error ? reason : new Error(String(reason));
}
/**
 * tar reading an archive's content on its stdin, straight from the decompressor's pipe
 * (nothing passes through this process). tar reads to the end of its input
 * (`--ignore-zeros`): stopping at the end-of-archive marker would close the pipe while the
 * zero padding after it is still on its way, killing the decompressor (and age) before they
 * checked their own ends, a complete read that looks like a failed one. `problem` names what
 * failed: the reading (damage, a wrong key) before tar, which then only saw its input end.
 */
function tarOnArchive(file, tarArgs, options = {}) {
    const content = openArchive(file, options.signal);
    const argv = ['tar', '--ignore-zeros', ...tarArgs];
    const command = streamProcess(argv, { ...options, stdinFrom: content.stdout });
    return {
        stdout: command.stdout,
        done: Promise.all([command.done, content.done]).then(([result, read]) => {
            const said = `${argv[0]} exit ${result.exitCode}: ${stderrTail(result.stderr) || 'no message'}`;
            if (!read.ok)
                return {
                    ok: false,
                    problem: result.exitCode === 0 ? read.problem : `${read.problem} (${said})`,
                    readFailed: true,
                };
            return result.exitCode === 0
                ? { ok: true, problem: '', readFailed: false }
                : { ok: false, problem: said, readFailed: false };
        }),
    };
}

;// CONCATENATED MODULE: ./src/steps/tar-scan.ts
// Reads a tar stream's headers as it passes through, unchanged: each member's name, type
// and size (and an incremental archive's directory contents, GNU.dumpdir), told one at a
// time. The data blocks are skipped, never copied or held: memory stays flat.

const BLOCK = 512;
const EMPTY = Buffer.alloc(0);
/** A tar number field: octal digits, or GNU's base-256 for big values. Pure. */
function tarNumber(field) {
    if (field[0] & 0x80) {
        let value = field[0] & 0x7f;
        for (let i = 1; i < field.length; i++)
            value = value * 256 + field[i];
        return value;
    }
    const text = field
        .toString('latin1')
        .replace(/[\0 ]+$/g, '')
        .trim();
    return text === '' ? 0 : parseInt(text, 8);
}
function cString(field) {
    const end = field.indexOf(0);
    return field.subarray(0, end === -1 ? field.length : end).toString('utf8');
}
/** A pax extended header's records (`LEN key=value\n`), values as raw bytes. Pure. */
function paxRecords(data) {
    const records = new Map();
    for (let at = 0; at < data.length;) {
        const space = data.indexOf(0x20, at);
        if (space === -1)
            break;
        const length = Number(data.subarray(at, space).toString('latin1'));
        if (!Number.isInteger(length) || length <= 0)
            break;
        const record = data.subarray(space + 1, at + length - 1);
        const equals = record.indexOf(0x3d);
        if (equals !== -1)
            records.set(record.subarray(0, equals).toString('utf8'), record.subarray(equals + 1));
        at += length;
    }
    return records;
}
/** The `path` of a pax extended header's records, if it has one. Pure. */
function paxPath(data) {
    return paxRecords(data).get('path')?.toString('utf8');
}
/** Parses a GNU.dumpdir value: `<flag><name>\0` entries, ended by an empty one. Pure. */
function parseDumpdir(value) {
    const entries = [];
    for (let at = 0; at < value.length;) {
        const end = value.indexOf(0, at);
        const item = value.subarray(at, end === -1 ? value.length : end);
        if (item.length === 0)
            break;
        const flag = String.fromCharCode(item[0]);
        // R/T/X record renames in a snapshot's own bookkeeping; only what is there counts.
        if (flag === 'Y' || flag === 'N' || flag === 'D')
            entries.push({ flag, name: item.subarray(1).toString('utf8') });
        at = end === -1 ? value.length : end + 1;
    }
    return entries;
}
const padded = (size) => Math.ceil(size / BLOCK) * BLOCK;
function memberType(flag) {
    if (flag === '0' || flag === '\0' || flag === '7' || flag === 'S')
        return 'file';
    if (flag === '5' || flag === 'D')
        return 'directory';
    if (flag === '2')
        return 'symlink';
    if (flag === '1')
        return 'hardlink';
    return 'other';
}
/**
 * Passes a tar stream on unchanged and tells `onMember` about each member. Fails on a
 * stream that ends without tar's end-of-archive marker.
 */
class TarScan extends external_node_stream_namespaceObject.Transform {
    /** Bytes of header material waiting for the rest of its blocks. */
    pending = Buffer.alloc(0);
    /** Data bytes of the current member still to skip. */
    skip = 0;
    /** A meta record (pax header, long name) whose data is being read whole. */
    meta;
    longName;
    longLink;
    pax;
    ended = false;
    /** Bytes passed through. */
    bytes = 0;
    /** Bytes of the files' contents passed so far (what a progress line counts). */
    fileBytes = 0;
    /** Of the current member's data, the bytes that are file content (the rest is padding). */
    contentLeft = 0;
    onMember;
    onChunk;
    keepEnd;
    /** Without the marker: the start of a header block the last chunk ended in. */
    held = EMPTY;
    /**
     * `onChunk`: told after each chunk has been read (for progress lines). `keepEnd: false`
     * drops the end-of-archive marker (and tar's padding after it): another archive's
     * members follow it in the same stream.
     */
    constructor(onMember, onChunk, options = {}) {
        super();
        this.onMember = onMember;
        this.onChunk = onChunk;
        this.keepEnd = options.keepEnd ?? true;
    }
    _transform(chunk, _encoding, callback) {
        if (this.ended && !this.keepEnd)
            return callback();
        let endAt;
        try {
            endAt = this.scan(chunk);
        }
        catch (error) {
            return callback(error);
        }
        if (this.keepEnd) {
            this.bytes += chunk.length;
            this.onChunk?.(this);
            return callback(null, chunk);
        }
        // Without the marker: a header block cut by the chunk's end is held back until it is
        // known not to be the marker; what comes from the marker on is dropped.
        const total = this.held.length > 0 ? Buffer.concat([this.held, chunk]) : chunk;
        let out;
        if (endAt !== undefined)
            out = total.subarray(0, this.held.length + endAt);
        else if (this.ended)
            out = EMPTY;
        else {
            const holding = this.meta === undefined && this.skip === 0 ? this.pending.length : 0;
            out = total.subarray(0, total.length - holding);
            this.held = holding > 0 ? Buffer.from(total.subarray(total.length - holding)) : EMPTY;
        }
        if (this.ended)
            this.held = EMPTY;
        this.bytes += out.length;
        this.onChunk?.(this);
        callback(null, out.length > 0 ? out : undefined);
    }
    /**
     * Reads a chunk's headers; returns where in it the end-of-archive marker starts (negative:
     * in the bytes held back from the chunk before), or undefined.
     */
    scan(chunk) {
        let at = 0;
        while (at < chunk.length && !this.ended) {
            const blockStart = at - this.pending.length;
            if (this.skip > 0) {
                const take = Math.min(this.skip, chunk.length - at);
                const content = Math.min(take, this.contentLeft);
                this.contentLeft -= content;
                this.fileBytes += content;
                this.skip -= take;
                at += take;
                continue;
            }
            const need = this.meta ? padded(this.meta.size) : BLOCK;
            const take = Math.min(need - this.pending.length, chunk.length - at);
            this.pending =
                this.pending.length === 0 && take === need
                    ? chunk.subarray(at, at + take)
                    : Buffer.concat([this.pending, chunk.subarray(at, at + take)]);
            at += take;
            if (this.pending.length < need)
                return undefined;
            const block = this.pending;
            this.pending = Buffer.alloc(0);
            if (this.meta)
                this.takeMeta(block);
            else {
                this.takeHeader(block);
                // A marker straddling two chunks starts before this one: drop all of this one.
                if (this.ended)
                    return blockStart;
            }
        }
        return undefined;
    }
    takeMeta(data) {
        const { type, size } = this.meta;
        this.meta = undefined;
        const body = data.subarray(0, size);
        if (type === 'L')
            this.longName = cString(body);
        else if (type === 'K')
            this.longLink = cString(body);
        else if (type === 'x')
            this.pax = paxRecords(Buffer.from(body));
    }
    takeHeader(header) {
        if (header.every((b) => b === 0)) {
            this.ended = true;
            return;
        }
        const flag = String.fromCharCode(header[156]);
        const size = tarNumber(header.subarray(124, 136));
        if (flag === 'x' || flag === 'L' || flag === 'K' || flag === 'g') {
            if (size > 16 * 1024 * 1024)
                throw new Error(`a tar extended header of ${size} bytes`);
            if (size === 0)
                return;
            this.meta = { type: flag, size };
            return;
        }
        const magic = header.subarray(257, 263).toString('latin1');
        const prefix = magic.startsWith('ustar') && magic !== 'ustar ' ? cString(header.subarray(345, 500)) : '';
        const plain = cString(header.subarray(0, 100));
        const pax = this.pax;
        const name = pax?.get('path')?.toString('utf8') ??
            this.longName ??
            (prefix ? `${prefix}/${plain}` : plain);
        const link = pax?.get('linkpath')?.toString('utf8') ?? this.longLink ?? cString(header.subarray(157, 257));
        const type = memberType(flag);
        const paxSize = pax?.get('size');
        const dataSize = paxSize ? Number(paxSize.toString('latin1')) : size;
        const realSize = pax?.get('GNU.sparse.realsize') ?? pax?.get('GNU.sparse.size');
        const dumpdir = pax?.get('GNU.dumpdir');
        this.onMember({
            name: name.replace(/^\.\//, '').replace(/\/+$/, ''),
            type,
            size: type === 'file' ? (realSize ? Number(realSize.toString('latin1')) : dataSize) : 0,
            ...(type === 'symlink' || type === 'hardlink' ? { linkTarget: link } : {}),
            ...(dumpdir ? { dumpdir: parseDumpdir(dumpdir) } : {}),
        });
        this.pax = undefined;
        this.longName = undefined;
        this.longLink = undefined;
        // Links and directories have no data, whatever their size field says. (Old GNU
        // sparse headers with extension blocks are not written by tar --format=posix.)
        this.skip = flag === '1' || flag === '2' || flag === '5' ? 0 : padded(dataSize);
        this.contentLeft = type === 'file' ? Math.min(dataSize, this.skip) : 0;
    }
    _flush(callback) {
        if (!this.ended)
            return callback(new Error('the tar stream ends without its end-of-archive marker'));
        callback();
    }
}

;// CONCATENATED MODULE: ./src/steps/files.ts
// Reads the instance's files on the host with GNU tar and streams them into compressed
// archives here, keeping ACLs, xattrs, owners (numeric), modes, hard links, hidden files and
// empty directories. Two passes: the base (level 0) while the instance is live, then inside
// the maintenance window the delta (level 1): only what changed, and what was deleted.













/** Archive member directories: where each part of the instance lands in the archive. */
const LAYOUT = { install: 'owncloud', data: 'data', absolute: 'extra' };
/** A path in the form tar reads it with `--directory=/`: without the leading slash. Pure. */
function fromRoot(path) {
    const relative = path.replace(/^\/+/, '').replace(/\/+$/, '');
    if (relative === '')
        throw new BackupError('The root directory itself cannot be backed up.');
    if (/[\n\0]/.test(relative))
        throw new BackupError(`The path '${path}' contains a line break, which tar cannot be told.`);
    return relative;
}
/** `text` with every character an extended regex gives a meaning to escaped, and `,`. Pure. */
function escapeRegex(text) {
    return text.replace(/[\\.[\](){}|*+?^$,]/g, '\\$&');
}
/**
 * tar --transform expressions that rename each part's host path to its archive member:
 * the innermost first, each result marked by a leading '/' (which no host path read with
 * --directory=/ has) so that no later expression renames it again, then the mark removed.
 * Symlink targets are left as they are. Pure.
 */
function tarTransforms(parts, rest) {
    const ordered = [...parts].sort((a, b) => b.source.length - a.source.length);
    return [
        ...ordered.map((p) => {
            const replacement = p.member.replace(/[\\&,]/g, '\\$&');
            return `--transform=s,^${escapeRegex(fromRoot(p.source))}(/|$),/${replacement}\\1,xrhS`;
        }),
        // `rest`: where every name no part renamed goes (below it, as it is).
        ...(rest ? [`--transform=s,^([^/]),/${rest}/\\1,xrhS`] : []),
        '--transform=s,^/,,rhS',
    ];
}
/** A glob as a regular expression for whole names (rsync's rules: `*` stops at '/'). Pure. */
function globRegex(glob) {
    let out = '';
    for (let i = 0; i < glob.length; i++) {
        const c = glob[i];
        if (c === '*' && glob[i + 1] === '*') {
            out += '.*';
            i++;
        }
        else if (c === '*')
            out += '[^/]*';
        else if (c === '?')
            out += '[^/]';
        else if (c === '[') {
            const end = glob.indexOf(']', i + 2);
            if (end === -1)
                out += '\\[';
            else {
                const body = glob
                    .slice(i + 1, end)
                    .replace(/^!/, '^')
                    .replace(/\\/g, '\\\\');
                out += `[${body}]`;
                i = end;
            }
        }
        else
            out += c.replace(/[\\.(){}|+^$]/g, '\\$&');
    }
    return new RegExp(`^(?:${out})$`);
}
/**
 * The user's exclude patterns (rsync's form) as tar options. A pattern with a leading '/'
 * is anchored at the root of each part it falls in (the installation, the data directory,
 * '/' for absolute paths); any other matches at any depth, `*` within one name and `**`
 * across names. A trailing '/' is dropped: tar cannot restrict a pattern to directories.
 * A pattern that would match a part's own path (`data` against the data directory) is
 * refused: tar would leave out the whole part. Pure.
 */
function tarExcludeOptions(patterns, parts) {
    const options = [];
    for (const raw of patterns) {
        const pattern = raw.replace(/\/+$/, '');
        if (pattern === '')
            continue;
        if (pattern.startsWith('/')) {
            for (const { part, within } of anchoredIn(pattern, parts)) {
                const target = within === '' ? fromRoot(part.source) : `${fromRoot(part.source)}/${within}`;
                options.push('--anchored', '--wildcards', '--no-wildcards-match-slash', `--exclude=${target}`);
            }
            continue;
        }
        const matcher = globRegex(pattern);
        for (const part of parts) {
            const names = fromRoot(part.source).split('/');
            for (let i = 0; i < names.length; i++)
                for (let j = i + 1; j <= names.length; j++)
                    if (matcher.test(names.slice(i, j).join('/')))
                        throw new InputError(`exclude: '${raw}' matches the name of '${part.source}' itself, which would leave it out whole. Anchor the pattern with a leading '/' (e.g. '/${pattern}') to mean a path inside it.`);
        }
        const across = pattern.includes('**');
        options.push('--no-anchored', '--wildcards', across ? '--wildcards-match-slash' : '--no-wildcards-match-slash', `--exclude=${across ? pattern.replaceAll('**', '*') : pattern}`);
    }
    return options;
}
/**
 * The parts an anchored pattern (leading '/') falls in, and what of it lies within each:
 * '' when it names the part itself. Its root is each part's pattern root (the data
 * directory, the installation, '/' for absolute paths). Pure.
 */
function anchoredIn(pattern, parts) {
    const path = pattern.replace(/^\/+/, '');
    const found = [];
    for (const part of parts) {
        const root = part.patternRoot;
        if (root === '')
            found.push({ part, within: path });
        else if (path.startsWith(`${root}/`))
            found.push({ part, within: path.slice(root.length + 1) });
        else if (root === path)
            found.push({ part, within: '' });
    }
    return found;
}
/** The sources a pass gives tar: the outermost of its parts (an inner one is read with it). */
function outermostSources(parts) {
    const sources = [...new Set(parts.map((p) => p.source))];
    return sources.filter((s) => !sources.some((o) => o !== s && isWithin(s, o)));
}
/** Options every tar pass is given, for these parts. Pure. */
function commonOptions(fileSet, parts) {
    return [
        'tar',
        '--create',
        '--file=-',
        '--format=posix',
        '--directory=/',
        '--one-file-system',
        // atime/ctime records change on every read and say nothing a restore needs.
        '--pax-option=delete=atime,delete=ctime',
        ...TAR_METADATA_FLAGS,
        ...fileSet.skip.flatMap((path) => [
            '--anchored',
            '--no-wildcards',
            `--exclude=${fromRoot(path)}`,
        ]),
        ...tarExcludeOptions(fileSet.exclude, parts),
        // Wildcards stay the patterns' own: left on for the paths to read, they make tar's
        // incremental mode drop every directory record (GNU tar 1.34).
        '--no-wildcards',
    ];
}
/**
 * The directories above the nested install paths (`themes` above `themes/mytheme`) and
 * above the absolute paths (`/etc`, `/etc/apache2` above `/etc/apache2/x.conf`), each
 * archived alone so that it comes back with its own owner and mode: extracted by hand and
 * copied into place (`cp -a`), a directory tar made up would carry tar's defaults onto
 * the real one (`/tmp` losing its mode). Pure.
 */
function impliedParents(fileSet) {
    const install = new Set();
    const absolute = new Set();
    for (const part of fileSet.parts) {
        if (part.part === 'data')
            continue;
        const names = part.patternRoot.split('/');
        for (let i = 1; i < names.length; i++) {
            const prefix = names.slice(0, i).join('/');
            if (part.part === 'install')
                install.add(`${fileSet.installDir}/${prefix}`);
            else
                absolute.add(`/${prefix}`);
        }
    }
    const shallowFirst = (set) => [...set].sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b));
    return { install: shallowFirst(install), absolute: shallowFirst(absolute) };
}
/**
 * The tar runs on the host for one pass, their archives joined into one here (each but the
 * last without its end-of-archive marker). The base pass reads the installation's parts
 * (and the directories above nested ones) in a plain run, then the data directory and the
 * absolute paths in GNU tar's incremental mode: the snapshot file remembers what it saw, so
 * that the delta pass archives only what changed since, with every directory's list of
 * entries (what was deleted is deleted on extraction too). Each part is read where it
 * really is and renamed to its archive member; owners are numeric, ACLs and xattrs kept,
 * one file system per path (as the size estimate measures). Pure.
 */
function tarCommands(fileSet, phase, snapshot) {
    const install = fileSet.parts.filter((p) => p.part === 'install');
    const live = fileSet.parts.filter((p) => p.part !== 'install');
    const commands = [];
    if (phase === 'base' && install.length > 0) {
        const parents = impliedParents(fileSet);
        // A data directory inside the installation (a tarball install) is the next run's.
        const inside = live.filter((p) => install.some((i) => isWithin(p.source, i.source)));
        commands.push([
            ...commonOptions(fileSet, install),
            ...inside.flatMap((p) => ['--anchored', '--no-wildcards', `--exclude=${fromRoot(p.source)}`]),
            ...tarTransforms([
                ...install,
                ...(parents.install.length > 0
                    ? [
                        {
                            source: fileSet.installDir,
                            member: LAYOUT.install,
                            part: 'install',
                            patternRoot: '',
                        },
                    ]
                    : []),
            ], 
            // What no part renamed is a directory above an absolute path: it goes below extra/.
            parents.absolute.length > 0 ? LAYOUT.absolute : undefined),
            '--no-recursion',
            ...[...parents.install, ...parents.absolute].map((p) => `--add-file=${fromRoot(p)}`),
            '--recursion',
            ...outermostSources(install).map((s) => `--add-file=${fromRoot(s)}`),
        ]);
    }
    commands.push([
        ...commonOptions(fileSet, live),
        `--listed-incremental=${snapshot}`,
        // See FORGET_DEVICES: renames are not detected, moved directories are archived whole.
        ...(phase === 'delta' ? ['--no-check-device'] : []),
        // Every directory is new to the base pass: nothing worth a line.
        '--warning=no-new-dir',
        ...tarTransforms(live),
        ...outermostSources(live).map((s) => `--add-file=${fromRoot(s)}`),
    ]);
    return commands;
}
/**
 * Creates the private directory on the host that holds a run's tar snapshot file, as the
 * session's own user (tar, through sudo or not, can write there; the user can remove it).
 */
async function createSnapshotDir(host) {
    const result = reached(host, await host.run(['mktemp', '-d', '-t', 'owncloud-backup-snapshot.XXXXXXXXXX']));
    const dir = result.stdout.trim();
    if (result.exitCode !== 0 || !dir.startsWith('/'))
        throw new BackupError(`Could not create a private temporary directory on ${host.label}: ${stderrTail(result.stderr) || 'mktemp gave no name'}`);
    return dir;
}
/** Removes it again (it holds only the names and times of the files read). */
async function removeSnapshotDir(host, dir) {
    if (!/\/owncloud-backup-snapshot\.[A-Za-z0-9]+$/.test(dir))
        return;
    await host.run(['rm', '-rf', '--', dir]);
}
// GNU tar's incremental mode takes a directory whose device and inode it saw under another
// name as renamed, and records the rename under the host paths (not the archive's member
// names): an extraction elsewhere would fail on it. With the snapshot's device numbers
// cleared and --no-check-device, a directory is matched by name and inode only, so a moved
// (or deleted and recreated) directory is archived whole in the delta instead.
const FORGET_DEVICES = String.raw `
$in = $argv[1]; $out = $argv[2];
$d = file_get_contents($in);
if ($d === false) { fwrite(STDERR, "cannot read $in\n"); exit(1); }
$nl = strpos($d, "\n");
if ($nl === false || substr($d, $nl - 2, 2) !== '-2') { fwrite(STDERR, "not a tar snapshot of format 2\n"); exit(1); }
$f = explode("\0", substr($d, $nl + 1));
$n = count($f);
for ($i = 2; $i + 5 < $n; ) {
  $f[$i + 3] = '0';
  $i += 6;
  while ($i < $n && $f[$i] !== '') $i++;
  while ($i < $n && $f[$i] === '') $i++;
}
if (file_put_contents($out, substr($d, 0, $nl + 1) . implode("\0", $f)) === false) { fwrite(STDERR, "cannot write $out\n"); exit(1); }
`;
/** The snapshot the delta pass starts from: the base's, with directory devices cleared. */
async function deltaSnapshot(host, snapshot) {
    const out = `${snapshot}-delta`;
    const result = reached(host, await host.run(['php', '-d', 'memory_limit=-1', '-r', FORGET_DEVICES, snapshot, out]));
    if (result.exitCode !== 0)
        throw new BackupError(`Could not prepare tar's snapshot for the pass inside the maintenance window on ${host.label}: ${stderrTail(result.stderr) || stderrTail(result.stdout) || `php exit ${result.exitCode}`}`);
    return out;
}
const KEPT_LINES = 20;
/**
 * One pass: tar on the host streams the parts here, where they are compressed into `path`
 * (hashed on the way) while their headers are read (`onMember`). tar's exit 1 (a file
 * changed or vanished while read) is reported, not failed: the base pass runs on a live
 * server and the delta pass catches up.
 */
async function streamFiles(host, fileSet, options) {
    const complaints = [];
    let pending = '';
    const onStderr = (text) => {
        const lines = (pending + text).split('\n');
        pending = lines.pop();
        for (const line of lines)
            if (line.trim() !== '') {
                complaints.push(line);
                if (complaints.length > KEPT_LINES)
                    complaints.shift();
            }
    };
    const stats = { files: 0, bytes: 0 };
    const commands = tarCommands(fileSet, options.phase, options.snapshot);
    // The runs' archives, joined: what the compressor reads.
    const joined = new external_node_stream_namespaceObject.PassThrough();
    const writing = compressToFile(joined, options.compression, options.path, options.signal, options.encryptTo);
    // A write that fails (a full disk) stops the tar run feeding it, and is the cause told.
    let current;
    let writeFailure;
    const stopCurrent = () => {
        current?.tar.kill();
        current?.tar.stdout.destroy();
        current?.scan.destroy();
    };
    writing.catch((error) => {
        writeFailure = { error };
        stopCurrent();
    });
    let readBefore = 0;
    let changedWhileRead = false;
    const fail = async (error) => {
        joined.destroy();
        await writing.catch(() => { });
        (0,external_node_fs_namespaceObject.rmSync)(options.path, { force: true });
        throw error;
    };
    for (const [index, argv] of commands.entries()) {
        const last = index === commands.length - 1;
        const scan = new TarScan((member) => {
            if (member.type === 'file' || member.type === 'hardlink') {
                stats.files++;
                stats.bytes += member.size;
            }
            options.onMember?.(member);
        }, (read) => options.progress?.update({ bytes: readBefore + read.fileBytes, files: stats.files }), { keepEnd: last });
        const tar = host.stream(guardedCommand([...fileSet.readAs, ...argv], 'none'), {
            input: '\n',
            keepStdinOpen: true,
            signal: options.signal,
            onStderr,
        });
        current = { tar, scan };
        if (writeFailure)
            stopCurrent();
        tar.stdout.pipe(scan).pipe(joined, { end: last });
        const [scanned, result] = await Promise.allSettled([(0,external_node_stream_promises_namespaceObject.finished)(scan), tar.done]);
        readBefore += scan.fileBytes;
        if (options.signal.aborted) {
            tar.kill();
            return fail(new InterruptedError());
        }
        if (writeFailure)
            return fail(writeFailure.error);
        if (result.status === 'rejected')
            return fail(result.reason);
        const ended = result.value;
        const transport = host.transportFailure(ended);
        if (transport)
            return fail(new LinkError(`Reading the files on ${host.label} failed: ${transport}`));
        if (ended.exitCode > 1) {
            if (pending.trim() !== '')
                complaints.push(pending);
            const said = stderrTail(complaints.join('\n'));
            return fail(new BackupError(isNoSpace(said)
                ? `Reading the files on ${host.label} failed: ${said}`
                : `Reading the files on ${host.label} failed (tar exit ${ended.exitCode}): ${said || 'no message'}`));
        }
        if (scanned.status === 'rejected')
            return fail(new BackupError(`Reading the files on ${host.label} failed: ${scanned.reason instanceof Error ? scanned.reason.message : String(scanned.reason)}`));
        changedWhileRead ||= ended.exitCode === 1;
    }
    let written;
    try {
        written = await writing;
    }
    catch (error) {
        return fail(error);
    }
    if (pending.trim() !== '')
        complaints.push(pending);
    return {
        ...written,
        ...stats,
        changedWhileRead,
        complaints: changedWhileRead ? complaints : [],
    };
}
/** A name's key in FileTally: two 32-bit FNV-1a hashes, 53 bits. Pure. */
function nameKey(name) {
    let a = 0x811c9dc5;
    let b = 0x01000193 ^ 0x5bd1e995;
    for (let i = 0; i < name.length; i++) {
        const c = name.charCodeAt(i);
        a = Math.imul(a ^ c, 0x01000193) >>> 0;
        b = Math.imul(b ^ c, 0x5bd1e995) >>> 0;
    }
    return (a & 0x1fffff) * 0x100000000 + b;
}
/**
 * The files a backup holds, counted from its two passes: the base pass's members, then
 * the delta's (its directories' entry lists say which files are unchanged, changed or
 * gone). Only a number per data file is kept, not its name.
 */
class FileTally {
    installFiles = 0;
    installBytes = 0;
    dataFiles = 0;
    dataBytes = 0;
    sizes = new Map();
    finalFiles = 0;
    finalBytes = 0;
    seen = new Set();
    topFiles;
    /** `topFiles`: data or absolute parts that are files, not directories (no listing holds them). */
    constructor(topFiles) {
        this.topFiles = [...topFiles];
    }
    base(member) {
        if (member.type !== 'file' && member.type !== 'hardlink')
            return;
        if (member.name.startsWith(`${LAYOUT.install}/`) || member.name === LAYOUT.install) {
            this.installFiles++;
            this.installBytes += member.size;
            return;
        }
        this.dataFiles++;
        this.dataBytes += member.size;
        this.sizes.set(nameKey(member.name), member.size);
    }
    delta(member) {
        if (member.dumpdir) {
            for (const entry of member.dumpdir) {
                if (entry.flag !== 'N')
                    continue;
                const key = nameKey(`${member.name}/${entry.name}`);
                const size = this.sizes.get(key);
                if (size === undefined || this.seen.has(key))
                    continue;
                this.seen.add(key);
                this.finalFiles++;
                this.finalBytes += size;
            }
            return;
        }
        if (member.type !== 'file' && member.type !== 'hardlink')
            return;
        const key = nameKey(member.name);
        if (this.seen.has(key))
            return;
        this.seen.add(key);
        this.finalFiles++;
        this.finalBytes += member.size;
    }
    /** Without a delta pass: what the base pass read. */
    total(withDelta) {
        if (!withDelta)
            return {
                files: this.installFiles + this.dataFiles,
                bytes: this.installBytes + this.dataBytes,
            };
        let files = this.finalFiles;
        let bytes = this.finalBytes;
        for (const name of this.topFiles) {
            const key = nameKey(name);
            const size = this.sizes.get(key);
            if (size === undefined || this.seen.has(key))
                continue;
            files++;
            bytes += size;
        }
        return { files: this.installFiles + files, bytes: this.installBytes + bytes };
    }
}
/** Where the theme may live, install-relative: legacy themes/<name>, or (ownCloud 10) a theme app. */
function themeCandidates(instance) {
    // A theme is a directory name; anything that could climb out of the installation is not one.
    if (!instance.theme || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(instance.theme))
        return [];
    return [`themes/${instance.theme}`, `apps-external/${instance.theme}`, `apps/${instance.theme}`];
}
/** Where the theme lives: the first candidate that is a directory. */
async function themePath(paths, instance) {
    for (const candidate of themeCandidates(instance))
        if (await paths.isDir(`${instance.installDir}/${candidate}`))
            return candidate;
    return undefined;
}
/** Drops paths that lie inside another path of the list (the theme app inside apps-external/). */
function outermost(paths) {
    const unique = [...new Set(paths)];
    return unique.filter((p) => !unique.some((q) => q !== p && isWithin(p, q)));
}
/**
 * What to copy for this instance: config/, the active theme, the app directories that are
 * not shipped server code and extra paths (or the whole installation for a tarball
 * install), the data directory without the live SQLite file, and absolute extra paths.
 * Checks that every path the user named exists.
 */
async function planFileSet(host, plan, instance, warn) {
    const relativeExtras = plan.extraPaths.filter((p) => !p.startsWith('/'));
    const extraAbsolute = plan.extraPaths.filter((p) => p.startsWith('/'));
    const extras = [...relativeExtras.map((p) => `${instance.installDir}/${p}`), ...extraAbsolute];
    // One question to the host about every path the plan below may look at.
    const paths = await HostPaths.inspect(host, instance.owner, [
        ...extras,
        instance.installDir,
        `${instance.installDir}/config`,
        instance.dataDir,
        ...appDirCandidates(instance),
        ...themeCandidates(instance).map((p) => `${instance.installDir}/${p}`),
    ]);
    for (const path of extras) {
        if (!(await paths.exists(path)))
            throw new InputError(`extra-paths: '${path}' does not exist on ${host.label}.`);
    }
    const inside = instance.dataDir.startsWith(`${instance.installDir}/`)
        ? instance.dataDir.slice(instance.installDir.length + 1)
        : undefined;
    const install = await detectInstallType(host, plan.installType, instance, paths);
    const apps = await planAppDirs(host, instance, install, warn, paths);
    const theme = await themePath(paths, instance);
    if (instance.theme && !theme)
        warn(`config.php names theme '${instance.theme}', but no themes/, apps-external/ or apps/ directory of that name exists.`);
    // The parts of the installation a restore needs; a tarball install copies all of it.
    const wanted = outermost([
        'config',
        ...(theme ? [theme] : []),
        ...apps.installPaths,
        ...relativeExtras,
    ]);
    const installPaths = install.type === 'tarball' ? ['.'] : wanted;
    const absolutePaths = outermost([...apps.absolutePaths, ...extraAbsolute]);
    const dataExclude = [];
    const file = instance.database.file;
    if (file && file.startsWith(`${instance.dataDir}/`)) {
        const relative = file.slice(instance.dataDir.length + 1);
        dataExclude.push(relative, `${relative}-journal`, `${relative}-wal`, `${relative}-shm`);
    }
    // Every top-level path: what it is (a symlinked one is followed) and where it really is.
    const named = [
        ...installPaths.map((p) => ({
            key: p,
            path: p === '.' ? instance.installDir : `${instance.installDir}/${p}`,
            what: p === '.' ? 'the installation' : `the installation's ${p}`,
        })),
        { key: '', path: instance.dataDir, what: 'the data directory' },
        ...absolutePaths.map((p) => ({
            key: p,
            path: p,
            what: apps.absolutePaths.includes(p) ? 'an app directory' : 'an extra path',
        })),
    ];
    // In a whole-installation copy, config/, the theme and app dirs are below the top level;
    // symlinked ones are copied again, followed, over the link.
    const below = install.type === 'tarball' ? wanted : [];
    const inspected = await paths.factsOf([
        ...named.map((n) => n.path),
        ...below.map((p) => `${instance.installDir}/${p}`),
    ]);
    const kinds = {};
    named.forEach((n, i) => {
        const { kind } = inspected[i];
        if (n.key !== '' && kind !== 'missing')
            kinds[n.key] = kind;
    });
    const linkedInside = below.filter((p, i) => {
        const found = inspected[named.length + i];
        if (found.link && found.kind !== 'missing')
            kinds[p] = found.kind;
        return found.link && found.kind !== 'missing';
    });
    // An SSH user that is neither root nor the instance's owner reads the files through sudo
    // (on this machine, the runner's own privilege decides: see preflight).
    const needsSudo = plan.target.kind === 'ssh' && host.account !== 'root' && host.account !== instance.owner;
    const realOf = (i) => inspected[i].real;
    // (Only a whole-installation copy has paths below the top level: named[0] is the installation.)
    const installReal = realOf(0);
    const parts = [];
    const skip = [];
    named.forEach((n, i) => {
        if (i < installPaths.length)
            parts.push({
                source: realOf(i),
                member: n.key === '.' ? LAYOUT.install : `${LAYOUT.install}/${n.key}`,
                part: 'install',
                patternRoot: n.key === '.' ? '' : n.key,
            });
        else if (i === installPaths.length)
            parts.push({ source: realOf(i), member: LAYOUT.data, part: 'data', patternRoot: '' });
        else
            parts.push({
                source: realOf(i),
                member: `${LAYOUT.absolute}${n.path}`,
                part: 'absolute',
                patternRoot: n.path.replace(/^\/+/, ''),
            });
    });
    below.forEach((p, i) => {
        const found = inspected[named.length + i];
        if (!found.link || found.kind === 'missing')
            return;
        parts.push({
            source: found.real,
            member: `${LAYOUT.install}/${p}`,
            part: 'install',
            patternRoot: p,
        });
        skip.push(`${installReal}/${p}`);
    });
    const dataReal = parts.find((p) => p.part === 'data').source;
    for (const p of dataExclude)
        skip.push(`${dataReal}/${p}`);
    return {
        readAs: needsSudo ? ['sudo', '-n'] : [],
        parts,
        skip,
        installDir: instance.installDir,
        installPaths,
        ...(inside ? { dataDirInsideInstall: inside } : {}),
        dataDir: instance.dataDir,
        absolutePaths,
        exclude: plan.exclude,
        dataExclude,
        kinds,
        ...(linkedInside.length > 0 ? { linkedInside } : {}),
        install,
        appDirs: apps.appDirs,
        ...(install.type === 'package'
            ? {
                serverCode: {
                    what: `everything else in ${instance.installDir}`,
                    why: `server code: package install, reinstall the same version (${instance.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud'} ${instance.version}${install.package ? `, package ${install.package}` : ''})`,
                },
            }
            : {}),
        included: [
            ...named.map((n, i) => ({ path: n.path, real: inspected[i].real, what: n.what })),
            ...below.flatMap((p, i) => linkedInside.includes(p)
                ? [
                    {
                        path: `${instance.installDir}/${p}`,
                        real: inspected[named.length + i].real,
                        what: `the installation's ${p}`,
                    },
                ]
                : []),
        ],
    };
}

;// CONCATENATED MODULE: ./package.json
const package_namespaceObject = {"rE":"0.1.0"};
;// CONCATENATED MODULE: ./src/tool.ts

/** This tool's name and version, as recorded in every manifest. */
const TOOL = { name: 'owncloud-backup', version: package_namespaceObject.rE };

;// CONCATENATED MODULE: ./src/manifest.ts




/**
 * How a reader opens one of the backup's archives: its path in the backup directory, and
 * for an encrypted one the identity file given for this run (undefined: none).
 */
function archiveFile(directory, record, identityFile) {
    return {
        path: `${directory.replace(/\/+$/, '')}/${record.name}`,
        compression: record.compression,
        ...(record.encryption === 'age' ? { age: { identityFile } } : {}),
    };
}
const MANIFEST_FORMAT = 'owncloud-backup/1';
/** One line for logs and summaries: 'on (master key master_1a2b3c4d, OC_DEFAULT_MODULE); index of 12 encrypted files'. */
function describeEncryption(record) {
    if (!record.enabled)
        return 'off';
    const mode = record.mode === 'master-key'
        ? `master key${record.masterKeyId ? ` ${record.masterKeyId}` : ''}`
        : 'a key pair per user';
    const index = record.index
        ? `; index of ${record.index.files} encrypted file${record.index.files === 1 ? '' : 's'}`
        : '';
    return `on (${mode}${record.module ? `, ${record.module}` : ''})${index}`;
}
/**
 * What the backup deliberately does not hold, and why, for the summaries: the server code
 * of a package install (with the shipped apps), exclude patterns, the live SQLite file.
 */
function leftOutOf(manifest) {
    const { files } = manifest;
    const shown = (names) => names.length > 6
        ? `${names.slice(0, 6).join(', ')} and ${names.length - 6} more`
        : names.join(', ');
    return [
        ...(files.serverCode ? [files.serverCode] : []),
        ...(files.appDirs ?? [])
            .filter((d) => d.shipped && d.shipped.length > 0)
            .map((d) => ({
            what: `the apps in ${d.path} that ship with the release (${shown(d.shipped)})`,
            why: 'they come back with the reinstall',
        })),
        ...(files.excludePatterns ?? []).map((p) => ({ what: `\`${p}\`` })),
        ...(files.leftOut ?? []).slice(0, 1).map((p) => ({
            what: `\`${p}\` and its journal files`,
            why: 'the live SQLite database; the dump replaces it',
        })),
    ];
}
/** sha256sum-compatible lines, so `sha256sum -c SHA256SUMS` checks a backup by hand. */
function checksumsText(archives) {
    return archives.map((a) => `${a.sha256}  ${a.name}\n`).join('');
}
/** Round to milliseconds, for durations people read. */
function seconds(ms) {
    return Math.round(ms) / 1000;
}
/** The parts of a manifest that describe the instance and the run, for every destination. */
function instanceRecords(input) {
    const { instance, fileSet, maintenance } = input;
    const db = instance.database;
    return {
        source: {
            host: input.source,
            transport: input.transport,
            installDir: instance.installDir,
            dataDir: instance.dataDir,
            configPath: instance.configPath,
            installType: fileSet.install.type,
            installTypeReason: fileSet.install.reason,
            owner: instance.owner,
        },
        instance: {
            product: instance.product,
            version: instance.version,
            instanceId: instance.instanceId,
            theme: instance.theme,
        },
        database: {
            type: db.type,
            name: db.name,
            ...(db.host ? { host: db.host } : {}),
            ...(db.port !== undefined ? { port: db.port } : {}),
            ...(db.socket ? { socket: db.socket } : {}),
            user: db.user,
            tablePrefix: db.tablePrefix,
            utf8mb4: db.utf8mb4,
            ...(db.file ? { file: db.file } : {}),
            dumpTool: input.tool.program,
            dumpToolVersion: input.tool.version,
            dumpBytes: input.dumpBytes,
            rowCounts: input.rowCounts,
            rowCountsInWindow: input.rowCountsInWindow,
        },
        files: {
            layout: {
                [LAYOUT.install]: instance.installDir,
                [LAYOUT.data]: instance.dataDir,
                ...(fileSet.absolutePaths.length > 0 ? { [LAYOUT.absolute]: '/' } : {}),
            },
            installPaths: fileSet.installPaths,
            absolutePaths: fileSet.absolutePaths,
        },
        maintenance: {
            managed: maintenance.managed,
            priorState: maintenance.window.priorState,
            switchedByUs: maintenance.window.switchedByUs,
            ...(maintenance.window.enabledAt
                ? { enabledAt: maintenance.window.enabledAt.toISOString() }
                : {}),
            ...(maintenance.window.restoredAt
                ? { restoredAt: maintenance.window.restoredAt.toISOString() }
                : {}),
            seconds: seconds(maintenance.seconds * 1000),
        },
    };
}
/** Assembles the manifest of a finished backup from what the run learned. */
function buildManifest(input) {
    const { fileSet } = input;
    const compression = input.archives[0]?.compression ?? 'zstd';
    const records = instanceRecords(input);
    return {
        format: MANIFEST_FORMAT,
        tool: TOOL,
        name: input.name,
        startedAt: input.startedAt.toISOString(),
        finishedAt: input.finishedAt.toISOString(),
        durationSeconds: seconds(input.finishedAt.getTime() - input.startedAt.getTime()),
        source: records.source,
        instance: records.instance,
        database: records.database,
        files: {
            ...records.files,
            excludePatterns: fileSet.exclude,
            leftOut: fileSet.dataExclude,
            appDirs: fileSet.appDirs,
            ...(fileSet.serverCode ? { serverCode: fileSet.serverCode } : {}),
            fileCount: input.stats.files,
            bytes: input.stats.bytes,
            ownersKept: input.ownersKept,
        },
        maintenance: records.maintenance,
        archives: input.archives.map(({ file, role, compression: method }) => ({
            name: file.path.split('/').pop(),
            role,
            compression: method,
            ...(input.encryptedTo ? { encryption: 'age' } : {}),
            size: file.size,
            sha256: file.sha256,
        })),
        ...(input.encryptedTo
            ? { age: { format: 'age-encryption.org/v1', recipients: input.encryptedTo } }
            : {}),
        ...(input.encryption ? { encryption: input.encryption } : {}),
        restore: restoreCommands(input, compression),
        ...(input.restoreTest ? { restoreTest: input.restoreTest } : {}),
    };
}
/** Escapes text for use inside a double-quoted shell string. */
function inDoubleQuotes(text) {
    return text.replace(/[\\"$`]/g, '\\$&');
}
/**
 * The restore commands with this backup's names and paths filled in; the engine's part comes
 * from its restoreHint, whose {placeholders} are replaced here.
 */
function restoreCommands(input, compression) {
    const { instance, fileSet } = input;
    const db = instance.database;
    const archive = (role) => quoteArg(input.archives
        .find((a) => a.role === role)
        .file.path.split('/')
        .pop());
    const installDir = quoteArg(instance.installDir);
    const dataDir = quoteArg(instance.dataDir);
    const unpacked = quoteArg(`${instance.dataDir}.restore`);
    const owner = quoteArg(instance.owner);
    const occ = `sudo -u ${owner} php ${quoteArg(`${instance.installDir}/occ`)}`;
    const values = {
        decompress: compression,
        dump: archive('database'),
        db: quoteArg(db.name),
        dbName: inDoubleQuotes(db.name),
        dbUser: inDoubleQuotes(db.user),
        charset: db.utf8mb4 ? 'utf8mb4' : 'utf8',
        dbFile: quoteArg(db.file ?? `${instance.dataDir}/${db.name}.db`),
    };
    // An encrypted backup's files are decrypted on the way, with the identity file the
    // variable AGE_IDENTITY names (bash stops with that message when it is not set).
    const age = `age --decrypt --identity "\${AGE_IDENTITY:?set AGE_IDENTITY to the age identity file}"`;
    const method = compression === 'zstd' ? '--zstd' : '--gzip';
    const extract = (role, more) => input.encryptedTo
        ? `${age} ${archive(role)} | tar --extract ${method}${more} --file - --directory ${unpacked} ${TAR_METADATA_FLAGS.map(quoteArg).join(' ')} --same-permissions`
        : `tar --extract${more} --file ${archive(role)} --directory ${unpacked} ${TAR_METADATA_FLAGS.map(quoteArg).join(' ')} --same-permissions`;
    if (input.encryptedTo)
        values.dump = `<(${age} ${archive('database')})`;
    const copyInto = (member, target) => `find ${unpacked}/${member} -mindepth 1 -maxdepth 1 -exec cp -a -t ${target} {} +`;
    return {
        before: fileSet.install.type === 'package'
            ? `Install ${instance.product} ${instance.version} (the same version) first: a package install's backup holds no server code. On a new database server, create the database user ${db.user} first. Keep the web server stopped until the end.`
            : `On a new database server, create the database user ${db.user} first. Keep the web server stopped until the end.`,
        files: [
            // A failed age must fail the line, not hide behind tar's exit status.
            ...(input.encryptedTo ? ['set -o pipefail'] : []),
            `mkdir -p ${installDir}`,
            `mkdir ${unpacked}`,
            extract('files', ''),
            // Then what changed inside the maintenance window, over it (deletions included).
            ...(input.archives.some((a) => a.role === 'files-delta')
                ? [extract('files-delta', ' --listed-incremental=/dev/null')]
                : []),
            copyInto(LAYOUT.install, installDir),
            `mv -T ${unpacked}/${LAYOUT.data} ${dataDir}`,
            ...(fileSet.absolutePaths.length > 0 ? [copyInto(LAYOUT.absolute, '/')] : []),
            `rm -rf ${unpacked}`,
        ].join(' && '),
        database: input.restoreHint.replace(/\{(\w+)\}/g, (_, key) => values[key] ?? `{${key}}`),
        finish: [
            `chown -R ${owner}: ${dataDir} ${quoteArg(`${instance.installDir}/config`)}`,
            `${occ} maintenance:data-fingerprint`,
            `${occ} maintenance:mode --off`,
        ].join(' && '),
    };
}

;// CONCATENATED MODULE: ./src/naming.ts
const SUFFIX = { zstd: '.zst', gzip: '.gz' };
function stamp(date) {
    const iso = date.toISOString(); // 2026-11-26T09:59:00.000Z
    return { day: iso.slice(0, 10).replaceAll('-', ''), time: iso.slice(11, 19).replaceAll(':', '') };
}
/** The backup directory (and default artifact name): `owncloud-backup-YYYYMMDD-HHMMSS`. */
function backupName(date) {
    const { day, time } = stamp(date);
    return `owncloud-backup-${day}-${time}`;
}
/** Whether a name is one backupName() makes: how the default backup artifacts are found again. */
function isBackupName(name) {
    return /^owncloud-backup-\d{8}-\d{6}$/.test(name);
}
/**
 * When the backup a name of backupName()'s was made (UTC), or undefined when the name is
 * not one (or holds no real date and time, such as a 13th month).
 */
function backupTime(name) {
    const match = /^owncloud-backup-(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})$/.exec(name);
    if (!match)
        return undefined;
    const [year, month, day, hour, minute, second] = match.slice(1).map(Number);
    const time = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
    // Date.UTC rolls 2026-13-01 over into 2027: only a name that comes back the same is a date.
    return backupName(time) === name ? time : undefined;
}
function dumpFileName(date, compression) {
    return `owncloud-dbbackup_${stamp(date).day}.bak${SUFFIX[compression]}`;
}
function filesArchiveName(date, compression) {
    return `owncloud-files_${stamp(date).day}.tar${SUFFIX[compression]}`;
}
/**
 * What changed while the base archive was read, read inside the maintenance window (GNU
 * tar level 1): `owncloud-files-delta_YYYYMMDD.tar.zst`, extracted after the base archive.
 */
function filesDeltaArchiveName(date, compression) {
    return `owncloud-files-delta_${stamp(date).day}.tar${SUFFIX[compression]}`;
}
/**
 * The index of the encrypted files' file cache entries (JSON lines), in a backup of an
 * instance with server-side encryption: `owncloud-encryption-index_YYYYMMDD.jsonl.zst`.
 */
function encryptionIndexName(date, compression) {
    return `owncloud-encryption-index_${stamp(date).day}.jsonl${SUFFIX[compression]}`;
}
const MANIFEST_NAME = 'manifest.json';
const CHECKSUMS_NAME = 'SHA256SUMS';
/** Suffix of a backup directory still being written: never taken for a finished backup. */
const INCOMPLETE_SUFFIX = '.incomplete';

;// CONCATENATED MODULE: ./src/report.ts
// Progress reporting, one interface for the terminal and the GitHub log. Every line
// passes through the secret registry first.
/** Formats seconds as people read them: 0.4 s, 12.3 s, 4 min 05 s. */
function formatSeconds(value) {
    if (value < 60)
        return `${value.toFixed(1)} s`;
    const minutes = Math.floor(value / 60);
    return `${minutes} min ${String(Math.round(value % 60)).padStart(2, '0')} s`;
}
/** Reports to a stream (stderr for the command line), with times. */
function streamReporter(write, redact) {
    const line = (prefix, message) => {
        const time = new Date().toISOString().slice(11, 19);
        write(`${time} ${prefix}${redact(message)}\n`);
    };
    return {
        info: (message) => line('', message),
        warning: (message) => line('warning: ', message),
        async group(title, work) {
            line('== ', title);
            const started = performance.now();
            const result = await work();
            line('   ', `${title}: done in ${formatSeconds((performance.now() - started) / 1000)}`);
            return result;
        },
    };
}

;// CONCATENATED MODULE: ./src/steps/dump.ts
// Dumps the database on the host with the engine's own tool and streams the raw dump here,
// where it is checked (exit status, completion trailer, inline errors, inactivity) and
// compressed. Compressing here rather than on the host means no pipe on the host can hide
// the dump's exit status.






const TAIL_BYTES = 4096;
/** Keeps the dump's last bytes, watches for an inline error marker and for silence. */
class DumpWatch extends external_node_stream_namespaceObject.Transform {
    tail = Buffer.alloc(0);
    bytes = 0;
    markerSeen = false;
    /** Told the bytes so far, chunk by chunk. */
    progress;
    timer;
    marker;
    idleMs;
    onIdle;
    constructor(marker, idleMs, onIdle) {
        super();
        this.marker = marker;
        this.idleMs = idleMs;
        this.onIdle = onIdle;
        this.arm();
    }
    arm() {
        clearTimeout(this.timer);
        this.timer = setTimeout(this.onIdle, this.idleMs);
    }
    _transform(chunk, _encoding, callback) {
        this.arm();
        this.bytes += chunk.length;
        this.progress?.update({ bytes: this.bytes });
        const window = Buffer.concat([this.tail.subarray(-256), chunk]);
        if (this.marker && window.includes(this.marker))
            this.markerSeen = true;
        this.tail = Buffer.concat([this.tail, chunk]).subarray(-TAIL_BYTES);
        this.push(chunk);
        callback();
    }
    _flush(callback) {
        clearTimeout(this.timer);
        callback();
    }
    stop() {
        clearTimeout(this.timer);
    }
}
/**
 * The longest a connection check may take. The clients give up connecting after 15 s on
 * their own (connect-timeout, PGCONNECT_TIMEOUT); this bounds anything else that hangs.
 */
const CHECK_TIMEOUT_SECONDS = 60;
/**
 * Before anything changes on the host: a cheap query with the dump's own credentials and
 * secret delivery, so a stopped server, a wrong password or a missing database file stops
 * the run before the bulk copy and before maintenance mode, with the engine's own words.
 */
async function checkDatabase(options) {
    const { host, engine } = options;
    const context = {
        connection: options.connection,
        tool: options.tool,
        account: host.account,
        owner: options.owner,
    };
    const command = engine.checkCommand(context);
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), CHECK_TIMEOUT_SECONDS * 1000);
    let result;
    try {
        result = await host.run(guardedCommand(command.argv, command.delivery), {
            input: secretLine(command.secret),
            keepStdinOpen: true,
            signal: abort.signal,
        });
    }
    finally {
        clearTimeout(timer);
    }
    if (abort.signal.aborted)
        throw new BackupError(`The ${engine.type} database did not answer a connection check within ${CHECK_TIMEOUT_SECONDS} s: is the database server running and answering?`);
    const transport = host.transportFailure(result);
    if (transport)
        throw new BackupError(`The database check failed: ${transport}`);
    if (result.exitCode === 127 && /not found/i.test(result.stderr))
        throw new BackupError(`${host.label} has no ${command.program} to check the ${engine.type} database before the backup: install it there.`);
    const problem = engine.checkProblem(result, context);
    if (problem)
        throw new BackupError(`The database check failed (nothing was changed yet): ${problem}`);
}
/** The dump compressed (and encrypted, with recipients) into a file on this machine. */
function dumpFile(path, compression, 
/** age's recipients file: the dump is encrypted as it is written. */
encryptTo) {
    return {
        store: (source) => compressToFile(source, compression, path, undefined, encryptTo),
        discard: async () => (0,external_node_fs_namespaceObject.rmSync)(path, { force: true }),
    };
}
async function dumpDatabase(options) {
    const { host, engine, connection } = options;
    const command = engine.dumpCommand({
        connection,
        tool: options.tool,
        account: host.account,
        owner: options.owner,
    });
    const abort = new AbortController();
    const cancel = () => abort.abort();
    options.signal.addEventListener('abort', cancel, { once: true });
    let idle = false;
    const dump = host.stream(guardedCommand(command.argv, command.delivery), {
        input: secretLine(command.secret),
        keepStdinOpen: true,
        signal: abort.signal,
    });
    const watch = new DumpWatch(engine.errorMarker, options.idleTimeoutSeconds * 1000, () => {
        idle = true;
        abort.abort();
    });
    watch.progress = options.progress;
    try {
        const [written, result] = await Promise.all([
            options.into.store(dump.stdout.pipe(watch)),
            dump.done,
        ]);
        watch.stop();
        if (options.signal.aborted)
            throw new InterruptedError();
        if (idle)
            throw new BackupError(`The database dump produced no output for ${options.idleTimeoutSeconds} s and was stopped (dump-timeout): is the database server answering?`);
        const transport = host.transportFailure(result);
        if (transport)
            throw new BackupError(`The database dump failed: ${transport}`);
        if (result.exitCode !== 0) {
            const cause = engine.explainFailure(result.stderr, connection) ?? stderrTail(result.stderr);
            throw new BackupError(`The database dump (${options.tool.program}) failed with exit code ${result.exitCode}: ${cause}`);
        }
        const tail = watch.tail.toString('utf8');
        const problem = watch.markerSeen
            ? `${options.tool.program} reported errors inside the dump`
            : engine.checkTail(tail);
        if (problem) {
            const cause = engine.explainFailure(`${result.stderr}\n${tail}`, connection);
            throw new BackupError(`The database dump is not complete: ${problem}.${cause ? ` ${cause}` : ''}`);
        }
        return { ...written, rawBytes: watch.bytes };
    }
    catch (error) {
        watch.stop();
        dump.kill();
        await options.into.discard().catch(() => { });
        throw error;
    }
    finally {
        options.signal.removeEventListener('abort', cancel);
    }
}

;// CONCATENATED MODULE: ./src/steps/preflight.ts
// Preflight: before anything changes on the host, make sure every tool the run needs is
// there (on the host and here) and that the runner has room for the backup.











const MISSING = `for p; do command -v "$p" >/dev/null 2>&1 || echo "$p"; done`;
// Arguments: how many names the dump program may have, those names, then the programs the
// run needs. Prints the first dump program found and the first line of its --version (or
// empty lines), then the needed programs that are missing, one a line.
const TOOLS = `n=$1; shift
i=0; dump=; version=
for p; do
  [ "$i" -lt "$n" ] || break
  i=$((i + 1))
  if command -v "$p" >/dev/null 2>&1; then dump=$p; version=$("$p" --version 2>&1 | head -n 1); break; fi
done
printf '%s\\n%s\\n' "$dump" "$version"
shift "$n"
${MISSING}`;
/** Names of the programs (of those given) the host lacks. */
async function missingOnHost(host, programs) {
    const result = reached(host, await host.run(['sh', '-c', MISSING, 'sh', ...programs]));
    return result.stdout.split('\n').filter(Boolean);
}
async function missingHere(programs) {
    const result = await runProcess(['sh', '-c', MISSING, 'sh', ...programs]);
    return result.stdout.split('\n').filter(Boolean);
}
/**
 * In one command: the engine's dump program on the host (the first of its names found) and
 * its version, and which of the other programs given the host lacks.
 */
async function findTools(host, engine, programs) {
    const names = engine.programs;
    const result = reached(host, await host.run(['sh', '-c', TOOLS, 'sh', String(names.length), ...names, ...programs]));
    const [program = '', version = '', ...missing] = result.stdout.split('\n');
    if (result.exitCode !== 0 || program.trim() === '')
        throw new BackupError(`${host.label} has no ${names.join(' or ')} to dump the ${engine.type} database: install it there.`);
    return {
        tool: {
            program: program.trim(),
            // sqlite3 appends a 40-hex source id that tells a reader nothing.
            version: version.trim().replace(/\s+[0-9a-f]{40,}\S*$/, ''),
        },
        missing: missing.filter(Boolean),
    };
}
/** Apparent size in bytes of the given paths on the host (one file system each, as tar --one-file-system reads them). */
async function sizeOnHost(host, owner, paths) {
    if (paths.length === 0)
        return 0;
    const result = reached(host, 
    // -D: a symlinked top-level path is measured as what it points to, as it is copied.
    await host.run(asUser(host.account, owner, ['du', '-s', '-x', '-D', '--bytes', '--', ...paths])));
    if (result.exitCode !== 0 && result.stdout.trim() === '')
        throw new BackupError(`Could not measure the files to back up on ${host.label}: ${stderrTail(result.stderr)}`);
    return result.stdout
        .split('\n')
        .filter(Boolean)
        .reduce((sum, line) => sum + Number(line.split('\t')[0] ?? 0), 0);
}
/** Free bytes where dir is (or will be created: its nearest existing ancestor). */
function freeBytes(dir) {
    const stats = (0,external_node_fs_namespaceObject.statfsSync)(nearestExisting(dir));
    return stats.bavail * stats.bsize;
}
/** The path itself when it exists, else its nearest existing ancestor. */
function nearestExisting(path) {
    let current = path;
    while (!(0,external_node_fs_namespaceObject.existsSync)(current) && (0,external_node_path_namespaceObject.dirname)(current) !== current)
        current = (0,external_node_path_namespaceObject.dirname)(current);
    return current;
}
/**
 * Where a path really is, symlinks resolved as far as it exists (it may not exist yet):
 * the real path of its nearest existing ancestor, then the rest as given.
 */
function resolveAsFarAsExists(path) {
    const existing = nearestExisting(path);
    let real;
    try {
        real = (0,external_node_fs_namespaceObject.realpathSync)(existing);
    }
    catch {
        real = existing;
    }
    return existing === path ? real : (0,external_node_path_namespaceObject.join)(real, (0,external_node_path_namespaceObject.relative)(existing, path));
}
/**
 * The copied path a backup directory lies in (each backup would then hold the ones before
 * it), or undefined. The backup dir and each `real` are paths with symlinks resolved.
 */
function backupDirInside(backupDir, included) {
    // The innermost one names the place best (the data dir, not the installation around it).
    return included
        .filter((i) => isWithin(backupDir, i.real))
        .sort((a, b) => b.real.length - a.real.length)[0];
}
function formatBytes(bytes) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
        value /= 1024;
        unit++;
    }
    return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}
/**
 * Room needed on the runner: the archives, which at worst (data that does not compress,
 * like photos) are as large as the files, plus tar's headers and a margin for the dump.
 */
function requiredBytes(sourceBytes) {
    return Math.ceil(sourceBytes * 1.05) + 64 * 1024 * 1024;
}
/**
 * Everything checked before the instance is touched: the dump tool and the other programs
 * on the host, the programs here, that the dump can reach and read the database (with its
 * own credentials), whether this runner can keep owners, what to copy, and whether the
 * backup directory has room for it.
 */
async function preflight(host, plan, instance, engine, reporter, 
/** runnerFiles false: the files never come here (restic on the host): no tar, no space. */
options = { runnerFiles: true }) {
    // restic reads the files itself (its own preflight finds it): no tar on the host then.
    const hostPrograms = ['php', ...(options.runnerFiles ? ['tar'] : []), 'du', 'mktemp'];
    if (host.account !== instance.owner)
        hostPrograms.push(host.account === 'root' ? 'runuser' : 'sudo');
    const { tool, missing: missingThere } = await findTools(host, engine, hostPrograms);
    reporter.info(`Dump tool on the host: ${tool.program} (${tool.version}).`);
    if (missingThere.length > 0)
        throw new BackupError(`${host.label} lacks ${missingThere.join(', ')}: install it there.`);
    const missing = await missingHere([
        ...(options.runnerFiles ? ['tar', compressorProgram(plan.compression)] : []),
        ...(plan.target.kind === 'ssh' ? ['ssh'] : []),
    ]);
    if (missing.length > 0)
        throw new BackupError(`This machine lacks ${missing.join(', ')}: install it to take backups.`);
    await checkDatabase({
        host,
        engine,
        connection: instance.database,
        tool,
        owner: instance.owner,
    });
    reporter.info(`The ${instance.database.type} database '${instance.database.name}' answers.`);
    const privilege = await runnerPrivilege();
    const fileSet = await planFileSet(host, plan, instance, (m) => reporter.warning(m));
    // On this machine tar reads the files with the runner's own privilege (sudo when it has it).
    if (plan.target.kind === 'local' && host.account !== instance.owner)
        fileSet.readAs = privilege.prefix;
    reporter.info(`${fileSet.install.type === 'package' ? 'Package' : 'Tarball'} install (${fileSet.install.reason}).`);
    // On this machine both sides are here: a backup-dir inside a copied path would copy itself.
    if (plan.target.kind === 'local' && options.runnerFiles) {
        const real = resolveAsFarAsExists(plan.backupDir);
        const container = backupDirInside(real, fileSet.included);
        if (container)
            throw new InputError(`backup-dir '${plan.backupDir}'${real === plan.backupDir ? '' : ` (really ${real})`} lies inside ${container.what} '${container.path}'${container.real === container.path ? '' : ` (really ${container.real})`}, which the backup copies: each backup would hold the ones before it. Choose a backup-dir outside the instance's files.`);
    }
    const whole = fileSet.installPaths.includes('.');
    const measured = [
        ...(whole
            ? [fileSet.installDir]
            : fileSet.installPaths.map((p) => `${fileSet.installDir}/${p}`)),
        // A tarball install's measure already holds a data directory inside it.
        ...(whole && fileSet.dataDirInsideInstall ? [] : [fileSet.dataDir]),
        // Linked elsewhere: measured where they point, as they are copied.
        ...(fileSet.linkedInside ?? []).map((p) => `${fileSet.installDir}/${p}`),
        ...fileSet.absolutePaths,
    ];
    const size = await sizeOnHost(host, instance.owner, measured);
    if (!options.runnerFiles) {
        reporter.info(`About ${formatBytes(size)} of files to back up.`);
        return { tool, fileSet, privilege, sizeBytes: size };
    }
    const need = requiredBytes(size);
    const free = freeBytes(plan.backupDir);
    reporter.info(`About ${formatBytes(size)} of files to copy; ${formatBytes(free)} free in ${plan.backupDir}.`);
    if (free < need)
        throw new BackupError(`Not enough space in ${plan.backupDir}: this backup needs about ${formatBytes(need)} (the archives, as large as the files when they do not compress), ${formatBytes(free)} is free. Free space or choose another backup-dir.`);
    return { tool, fileSet, privilege, sizeBytes: size };
}

;// CONCATENATED MODULE: ./src/progress.ts
// Progress of the long steps (the bulk copy, the archive): a line in the log at a steady
// pace, never a flood. Pure: the clock is injected, so the pacing is tested without waiting.



/** Seconds between progress lines unless OWNCLOUD_BACKUP_PROGRESS_SECONDS says otherwise. */
const DEFAULT_PROGRESS_SECONDS = 10;
const PROGRESS_ENV = 'OWNCLOUD_BACKUP_PROGRESS_SECONDS';
/** The interval from the environment (the action's `env:` or the shell), validated. */
function progressSecondsFrom(env) {
    const value = env[PROGRESS_ENV]?.trim();
    if (value === undefined || value === '')
        return DEFAULT_PROGRESS_SECONDS;
    const seconds = Number(value);
    if (!/^\d+(\.\d+)?$/.test(value) || !Number.isFinite(seconds))
        throw new InputError(`${PROGRESS_ENV} must be a number of seconds between progress lines (e.g. 10), got '${value}'.`);
    return seconds;
}
/**
 * Says when a line is due: the first one `intervalSeconds` after the start, then one per
 * interval, however often the tool reports.
 */
class ProgressThrottle {
    next;
    intervalMs;
    now;
    constructor(intervalSeconds, now) {
        this.intervalMs = intervalSeconds * 1000;
        this.now = now;
        this.next = now() + this.intervalMs;
    }
    /** Whether a line is due now; if so, the next one is due an interval later. */
    due() {
        const now = this.now();
        if (now < this.next)
            return false;
        this.next = now + this.intervalMs;
        return true;
    }
}
/** One progress line: `Bulk copy: 1.2 GiB of about 3.0 GiB (40 %), 1,234 files, 85.0 MiB/s, about 25 s left`. */
function formatProgress(label, count, elapsedSeconds, expectedBytes) {
    const parts = [];
    const rate = elapsedSeconds > 0 ? count.bytes / elapsedSeconds : 0;
    if (expectedBytes && expectedBytes > 0) {
        const percent = Math.min(100, Math.floor((count.bytes / expectedBytes) * 100));
        parts.push(`${formatBytes(count.bytes)} of about ${formatBytes(expectedBytes)} (${percent} %)`);
    }
    else {
        parts.push(formatBytes(count.bytes));
    }
    if (count.files !== undefined)
        parts.push(`${count.files.toLocaleString('en-US')} file${count.files === 1 ? '' : 's'}`);
    parts.push(`${formatBytes(rate)}/s`);
    if (expectedBytes && rate > 0 && count.bytes < expectedBytes)
        parts.push(`about ${formatSeconds((expectedBytes - count.bytes) / rate)} left`);
    return `${label}: ${parts.join(', ')}`;
}
/**
 * The progress of one step made of several runs (one rsync per part of the instance): each
 * run counts from zero, the step's line adds them up. Lines go out through `emit` when the
 * throttle says so; once any went out, `finish` adds the final totals.
 */
class StepProgress {
    started;
    throttle;
    done = { bytes: 0, files: 0 };
    current = { bytes: 0 };
    hasFiles = false;
    /** The counts the last line showed; undefined before the first line. */
    shown;
    label;
    options;
    constructor(label, options) {
        this.label = label;
        this.options = options;
        this.started = options.now();
        this.throttle = new ProgressThrottle(options.intervalSeconds, options.now);
    }
    /** The current run's counts so far (they never go down within a run). */
    update(count) {
        this.current = {
            bytes: Math.max(this.current.bytes, count.bytes),
            ...(count.files !== undefined
                ? { files: Math.max(this.current.files ?? 0, count.files) }
                : {}),
        };
        this.hasFiles ||= count.files !== undefined;
        if (this.throttle.due())
            this.write();
    }
    /** The current run ended with these totals; the next run counts from zero again. */
    endRun(total) {
        const last = total ?? this.current;
        this.done = {
            bytes: this.done.bytes + Math.max(last.bytes, this.current.bytes),
            files: this.done.files + Math.max(last.files ?? 0, this.current.files ?? 0),
        };
        this.hasFiles ||= last.files !== undefined;
        this.current = { bytes: 0 };
    }
    /** The step's counts so far, over every run. */
    total() {
        const bytes = this.done.bytes + this.current.bytes;
        if (!this.hasFiles)
            return { bytes };
        return { bytes, files: this.done.files + (this.current.files ?? 0) };
    }
    /** Ends the step: a last line with the totals, if any line went out and did not show them. */
    finish() {
        if (this.current.bytes > 0 || this.current.files)
            this.endRun();
        const total = this.total();
        if (this.shown === undefined)
            return;
        if (this.shown.bytes === total.bytes && this.shown.files === total.files)
            return;
        this.write();
    }
    write() {
        const total = this.total();
        this.shown = total;
        this.options.emit(formatProgress(this.label, total, (this.options.now() - this.started) / 1000, this.options.expectedBytes));
    }
}

;// CONCATENATED MODULE: ./src/retention.ts
// Which dated backups a retention policy keeps: restic's `forget` rules (its ApplyPolicy,
// as of restic 0.16), so that one policy means the same for a backup directory and for a
// restic repository. Pure: backups and their times in, the decision out. Periods are UTC
// calendar days, ISO weeks (Monday to Sunday, the year the week belongs to), months and
// years, and they count only periods that hold a backup.
const NO_RETENTION = {
    last: 0,
    daily: 0,
    weekly: 0,
    monthly: 0,
    yearly: 0,
};
const pad = (n, width = 2) => String(n).padStart(width, '0');
/** The ISO 8601 week of a UTC time, as Go's Time.ISOWeek (which restic uses): `2026-W48`. */
function isoWeek(time) {
    // The week's Thursday decides its year; weeks start on Monday.
    const day = Date.UTC(time.getUTCFullYear(), time.getUTCMonth(), time.getUTCDate());
    const weekday = (time.getUTCDay() + 6) % 7; // Monday 0 … Sunday 6
    const thursday = new Date(day + (3 - weekday) * 86_400_000);
    const year = thursday.getUTCFullYear();
    const week = Math.floor((thursday.getTime() - Date.UTC(year, 0, 1)) / (7 * 86_400_000)) + 1;
    return `${year}-W${pad(week)}`;
}
const PERIOD_RULES = [
    {
        field: 'daily',
        option: 'keep-daily',
        unit: 'day',
        period: (t) => `${t.getUTCFullYear()}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}`,
    },
    { field: 'weekly', option: 'keep-weekly', unit: 'week', period: isoWeek },
    {
        field: 'monthly',
        option: 'keep-monthly',
        unit: 'month',
        period: (t) => `${t.getUTCFullYear()}-${pad(t.getUTCMonth() + 1)}`,
    },
    { field: 'yearly', option: 'keep-yearly', unit: 'year', period: (t) => `${t.getUTCFullYear()}` },
];
function isRetentionOff(policy) {
    return Object.values(policy).every((n) => n === 0);
}
/** `keep-last 3, keep-daily 7` (the rules that are on), or `off`. */
function describePolicy(policy) {
    const on = [
        ['keep-last', policy.last],
        ...PERIOD_RULES.map((rule) => [rule.option, policy[rule.field]]),
    ].filter(([, n]) => n !== 0);
    return on.length === 0 ? 'off' : on.map(([option, n]) => `${option} ${n}`).join(', ');
}
/** Newest first; at the same time, the later name first (a stable order for ties). */
function newestFirst(a, b) {
    const byTime = b.time.getTime() - a.time.getTime();
    return byTime !== 0 ? byTime : a.name < b.name ? 1 : a.name > b.name ? -1 : 0;
}
/**
 * Decides which backups the policy keeps, as restic's `forget` does: newest first, each
 * rule keeps the newest backup of each period until it has kept as many as it may (keep-last
 * counts backups); a backup any rule keeps is kept. A rule that still may keep more when it
 * reaches the oldest backup keeps that one too (restic since 0.16: the history reaches back
 * as far as it can). An empty policy keeps everything. `protect` names a backup kept
 * whatever the policy says (the one just written).
 */
function selectKept(backups, policy, protect) {
    const sorted = [...backups].sort(newestFirst);
    const reasons = new Map();
    if (isRetentionOff(policy)) {
        for (const backup of sorted)
            reasons.set(backup.name, ['no keep-* rule is on']);
        return { keep: sorted, remove: [], reasons };
    }
    const lastLeft = { count: policy.last };
    const periods = PERIOD_RULES.filter((rule) => policy[rule.field] > 0).map((rule) => ({
        rule,
        count: policy[rule.field],
        /** The period the previous backup fell in. */
        previous: undefined,
        /** Period → the backup this rule keeps for it. */
        keptFor: new Map(),
    }));
    const keep = [];
    const remove = [];
    sorted.forEach((backup, index) => {
        const oldest = index === sorted.length - 1;
        const why = [];
        const whyNot = [];
        if (policy.last > 0) {
            if (lastLeft.count > 0) {
                lastLeft.count--;
                why.push(`keep-last ${policy.last}: one of the ${policy.last} newest`);
            }
            else
                whyNot.push(`keep-last ${policy.last}: not one of the ${policy.last} newest`);
        }
        for (const bucket of periods) {
            const { rule } = bucket;
            const n = policy[rule.field];
            const period = rule.period(backup.time);
            const newPeriod = period !== bucket.previous;
            if (bucket.count > 0 && (newPeriod || oldest)) {
                bucket.count--;
                bucket.previous = period;
                if (newPeriod) {
                    bucket.keptFor.set(period, backup.name);
                    why.push(`${rule.option} ${n}: the newest of ${rule.unit} ${period}`);
                }
                else
                    why.push(`${rule.option} ${n}: the oldest backup, kept as fewer than ${n} ${rule.unit}s hold backups`);
            }
            else {
                const newer = bucket.keptFor.get(period);
                whyNot.push(newer !== undefined
                    ? `${rule.option} ${n}: not the newest of ${rule.unit} ${period} (${newer} is)`
                    : `${rule.option} ${n}: ${rule.unit} ${period} is not one of the ${n} newest ${rule.unit}s with backups`);
            }
        }
        if (why.length === 0 && backup.name === protect)
            why.push('the backup just written');
        if (why.length > 0) {
            keep.push(backup);
            reasons.set(backup.name, why);
        }
        else {
            remove.push(backup);
            reasons.set(backup.name, whyNot);
        }
    });
    return { keep, remove, reasons };
}

;// CONCATENATED MODULE: ./src/steps/backup-dir.ts
// The backup directory on the runner: checked before anything else happens, created once the
// preflight has accepted it,
// held by one run at a time, cleared of the incomplete backups that killed runs left, and,
// after a successful backup, of the complete backups the retention policy does not keep.







/** statfs(2) magic numbers of kernel file systems that hold no files of ours. */
const PSEUDO_FILE_SYSTEMS = new Map([
    [0x9fa0, 'proc'],
    [0x62656572, 'sysfs'],
    [0x1cd1, 'devpts'],
    [0x27e0eb, 'cgroup'],
    [0x63677270, 'cgroup2'],
    [0x64626720, 'debugfs'],
    [0x73636673, 'securityfs'],
]);
function code(error) {
    return error.code ?? String(error);
}
/**
 * Checks, without creating anything, that the backup directory is (or can become) a
 * writable directory: it or its nearest existing ancestor is a directory this user may
 * write. Returns the missing levels, outermost first. Errors name the input.
 */
function checkBackupDir(path) {
    const missing = [];
    let existing = path;
    for (;;) {
        try {
            (0,external_node_fs_namespaceObject.statSync)(existing);
            break;
        }
        catch (error) {
            if (code(error) !== 'ENOENT' && code(error) !== 'ENOTDIR')
                throw new InputError(`backup-dir '${path}': cannot look at '${existing}' (${code(error)}).`);
            if (code(error) === 'ENOTDIR') {
                // Some level above is a file: find it for the message.
                existing = (0,external_node_path_namespaceObject.dirname)(existing);
                continue;
            }
            missing.unshift(existing);
            existing = (0,external_node_path_namespaceObject.dirname)(existing);
        }
    }
    if (!(0,external_node_fs_namespaceObject.statSync)(existing).isDirectory())
        throw new InputError(existing === path
            ? `backup-dir '${path}' is a file, not a directory. Choose a directory.`
            : `backup-dir '${path}': '${existing}' is a file, not a directory. Choose a directory.`);
    const pseudo = PSEUDO_FILE_SYSTEMS.get((0,external_node_fs_namespaceObject.statfsSync)(existing).type);
    if (pseudo)
        throw new InputError(`backup-dir '${path}': '${existing}' is on a pseudo file system (${pseudo}), where no backup can be written. Choose a directory on a normal file system.`);
    try {
        (0,external_node_fs_namespaceObject.accessSync)(existing, external_node_fs_namespaceObject.constants.W_OK | external_node_fs_namespaceObject.constants.X_OK);
    }
    catch {
        throw new InputError(`backup-dir '${path}': '${existing}' is not writable by this user. Choose a directory it can write.`);
    }
    return missing;
}
/**
 * Creates the backup directory's missing levels one by one from the nearest existing
 * ancestor. (A recursive mkdir where the file system answers ENOENT, as /proc does, never
 * returns.)
 */
function createBackupDir(path) {
    for (const level of checkBackupDir(path)) {
        try {
            (0,external_node_fs_namespaceObject.mkdirSync)(level);
        }
        catch (error) {
            if (code(error) === 'EEXIST' && (0,external_node_fs_namespaceObject.statSync)(level).isDirectory())
                continue;
            throw new InputError(`backup-dir '${path}': cannot create '${level}' (${code(error)}). Choose a directory on a normal file system.`);
        }
    }
}
/** Names a run gives its work in progress: `owncloud-backup-YYYYMMDD-HHMMSS.incomplete`. */
function isIncompleteName(name) {
    return (name.endsWith(INCOMPLETE_SUFFIX) &&
        /^owncloud-backup-\d{8}-\d{6}$/.test(name.slice(0, -INCOMPLETE_SUFFIX.length)));
}
/** Bytes under a tree (its files may belong to other users: measured with the runner's privilege). */
async function treeBytes(path, prefix) {
    const result = await runProcess([...prefix, 'du', '-s', '-x', '--bytes', '--', path]);
    return Number(result.stdout.split('\t')[0]) || 0;
}
/**
 * Removes an incomplete backup directory (only one: its name must say so) with its size,
 * or returns undefined when it is not there (the run finished, or removed it itself).
 */
async function removeIncompleteBackup(path, known) {
    if (!isIncompleteName(path.split('/').pop() ?? ''))
        return undefined;
    try {
        if (!(0,external_node_fs_namespaceObject.lstatSync)(path).isDirectory())
            return undefined;
    }
    catch {
        return undefined;
    }
    const privilege = known ?? (await runnerPrivilege());
    const bytes = await treeBytes(path, privilege.prefix);
    await removeTree(path, privilege).catch((error) => {
        throw new BackupError(`Could not remove ${path}: ${code(error)}`);
    });
    return { bytes };
}
/**
 * Removes the incomplete backups in the backup directory. Call it only while holding the
 * directory's lock: then none of them belongs to a running backup.
 */
async function removeStaleBackups(backupDir, report) {
    const stale = (0,external_node_fs_namespaceObject.readdirSync)(backupDir).filter(isIncompleteName).sort();
    // Asked once (sudo -n true), not for every directory.
    const privilege = stale.length > 0 ? await runnerPrivilege() : undefined;
    for (const name of stale) {
        const path = (0,external_node_path_namespaceObject.join)(backupDir, name);
        const removed = await removeIncompleteBackup(path, privilege);
        if (removed)
            report(path, removed.bytes);
    }
}
/**
 * The complete backups in the backup directory: directories (not symlinks) named
 * `owncloud-backup-YYYYMMDD-HHMMSS` with a real date, holding manifest.json. Anything else
 * there (other files and directories, incomplete backups) is not a backup of ours.
 */
function completeBackups(backupDir) {
    const found = [];
    for (const entry of (0,external_node_fs_namespaceObject.readdirSync)(backupDir, { withFileTypes: true })) {
        if (!entry.isDirectory() || !isBackupName(entry.name))
            continue;
        const time = backupTime(entry.name);
        if (!time)
            continue;
        try {
            if (!(0,external_node_fs_namespaceObject.lstatSync)((0,external_node_path_namespaceObject.join)(backupDir, entry.name, MANIFEST_NAME)).isFile())
                continue;
        }
        catch {
            continue;
        }
        found.push({ name: entry.name, time });
    }
    return found;
}
/**
 * Removes the complete backups the policy does not keep; `justWritten` (the backup this
 * run finished) stays whatever the policy says. Call it only while holding the directory's
 * lock. Each backup loses its manifest.json first, so that one whose removal fails or is cut
 * short never passes for a complete backup (and is never looked at again). A backup that
 * cannot be removed is reported and skipped; the others still go. Stops (keeping the rest)
 * once `signal` is aborted.
 */
async function pruneBackups(backupDir, policy, justWritten, options) {
    const decision = selectKept(completeBackups(backupDir), policy, justWritten);
    const outcome = {
        policy,
        kept: decision.keep.map((b) => b.name),
        removed: [],
        failed: [],
    };
    // Its files may belong to other users: removed with the runner's privilege, asked once.
    const privilege = decision.remove.length > 0 ? await runnerPrivilege() : undefined;
    for (const { name } of decision.remove) {
        if (options.signal.aborted) {
            outcome.kept.push(name); // not removed after all
            continue;
        }
        const path = (0,external_node_path_namespaceObject.join)(backupDir, name);
        let remains = `${path} (complete, untouched)`;
        try {
            await removeTree((0,external_node_path_namespaceObject.join)(path, MANIFEST_NAME), privilege);
            remains = `${path} (without its ${MANIFEST_NAME}: no longer taken for a backup)`;
            await removeTree(path, privilege);
            if ((0,external_node_fs_namespaceObject.existsSync)(path))
                throw new Error('it is still there after the removal');
            const reasons = decision.reasons.get(name) ?? [];
            outcome.removed.push({ name, reasons });
            options.onRemoved(path, reasons);
        }
        catch (error) {
            const message = error.code ?? describeError(error);
            outcome.failed.push({ name, remains, error: message });
            options.onFailed(path, remains, message);
        }
    }
    return outcome;
}

;// CONCATENATED MODULE: ./src/steps/window.ts
// The maintenance window, and the steps that run side by side inside it.


/**
 * Switches maintenance mode on (unless there is no guard: maintenance-mode false), runs the
 * work, and restores the prior state whatever happened: when that fails too, both causes
 * are reported (why the work failed, and that the instance is still in maintenance mode).
 */
async function inMaintenanceWindow(maintenance, reporter, work) {
    let failure;
    let outcome;
    try {
        await maintenance?.enable();
        outcome = await work();
    }
    catch (error) {
        failure = { error };
    }
    if (maintenance) {
        try {
            await maintenance.restore();
        }
        catch (restoreError) {
            throw new MaintenanceNotRestoredError(failure
                ? `${describeError(failure.error)} ${describeError(restoreError)}`
                : describeError(restoreError));
        }
        if (maintenance.window.switchedByUs)
            reporter.info(`Maintenance mode was on for ${formatSeconds(maintenance.seconds())}.`);
    }
    if (failure)
        throw failure.error;
    return outcome;
}
/**
 * Runs steps side by side; the first failure stops the others (through their signal) and,
 * once all have ended, is the one reported.
 */
async function allOrNothing(signal, start) {
    const steps = new AbortController();
    const stop = () => steps.abort();
    signal.addEventListener('abort', stop, { once: true });
    let firstFailure;
    try {
        const running = start(steps.signal).map((step) => step.catch((error) => {
            firstFailure ??= { error };
            steps.abort();
            throw error;
        }));
        const settled = await Promise.allSettled(running);
        if (firstFailure)
            throw firstFailure.error;
        return settled.map((s) => s.value);
    }
    finally {
        signal.removeEventListener('abort', stop);
    }
}

;// CONCATENATED MODULE: ./src/instance.ts
// What an ownCloud (or Nextcloud) instance says about itself in config.php, and how that
// combines with explicit overrides into the database connection a dump needs. Pure.


/** The config.php keys a backup reads. */
const CONFIG_KEYS = [
    'instanceid',
    'version',
    'datadirectory',
    'dbtype',
    'dbhost',
    'dbname',
    'dbuser',
    'dbpassword',
    'dbtableprefix',
    'mysql.utf8mb4',
    'theme',
    'maintenance',
    'installed',
    'apps_paths',
];
/** The values that end up in a command's argv (or on the dump's stdin): none may hold a NUL. */
const ARGUMENT_KEYS = [
    'datadirectory',
    'dbhost',
    'dbname',
    'dbuser',
    'dbpassword',
    'dbtableprefix',
    'theme',
];
/**
 * Why config.php's values cannot be used, naming the key (a NUL byte cannot be passed to
 * any program: no argv, file name or password holds one); undefined when they can.
 */
function invalidConfigValue(config) {
    for (const key of ARGUMENT_KEYS) {
        const value = config[key];
        if (typeof value === 'string' && value.includes('\0'))
            return `config.php's '${key}' contains a NUL byte, which no program accepts: fix the value in config.php.`;
    }
    return undefined;
}
const DB_TYPES = {
    mysql: 'mysql',
    pgsql: 'pgsql',
    sqlite: 'sqlite',
    sqlite3: 'sqlite',
};
function instance_text(value) {
    if (value === undefined || value === null || value === false)
        return '';
    return String(value);
}
/**
 * Splits config.php's dbhost as ownCloud does: `host`, `host:port`, `host:/path/to/socket`,
 * `[ipv6]:port`, or (PostgreSQL) a socket directory `/path`.
 */
function parseDbHost(dbhost) {
    const value = dbhost.trim();
    if (value === '')
        return {};
    if (value.startsWith('/'))
        return { socket: value };
    const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(value);
    let host;
    let rest;
    if (bracketed) {
        host = bracketed[1];
        rest = bracketed[2];
    }
    else {
        const colon = value.indexOf(':');
        host = colon === -1 ? value : value.slice(0, colon);
        rest = colon === -1 ? undefined : value.slice(colon + 1);
    }
    if (rest === undefined || rest === '')
        return { host };
    if (/^\d+$/.test(rest))
        return { host, port: Number(rest) };
    return { host, socket: rest };
}
/** The connection for the dump: config.php's values, each replaced by an override if given. */
function resolveDatabase(config, overrides, dataDir) {
    let type = overrides.type;
    if (!type) {
        const dbtype = instance_text(config.dbtype).toLowerCase();
        if (dbtype === 'oci')
            throw new InputError("config.php says dbtype 'oci' (Oracle), which is not supported: back it up with Oracle's own tools.");
        type = DB_TYPES[dbtype || 'sqlite'];
        if (!type)
            throw new InputError(`config.php has dbtype '${dbtype}', which is not supported. Expected mysql, pgsql or sqlite3.`);
    }
    const fromConfig = parseDbHost(instance_text(config.dbhost));
    const connection = {
        type,
        name: overrides.name ?? (instance_text(config.dbname) || 'owncloud'),
        user: overrides.user ?? instance_text(config.dbuser),
        password: overrides.password ?? instance_text(config.dbpassword),
        tablePrefix: instance_text(config.dbtableprefix) || 'oc_',
        utf8mb4: config['mysql.utf8mb4'] === true || config['mysql.utf8mb4'] === 'true',
    };
    const explicit = overrides.host !== undefined ? parseDbHost(overrides.host) : fromConfig;
    if (explicit.host && explicit.host !== 'localhost')
        connection.host = explicit.host;
    if (explicit.host === 'localhost' && type === 'pgsql')
        connection.host = 'localhost';
    if (explicit.socket)
        connection.socket = explicit.socket;
    const port = overrides.port ?? explicit.port;
    if (port !== undefined)
        connection.port = port;
    if (type === 'sqlite')
        connection.file = `${dataDir}/${connection.name}.db`;
    else if (connection.user === '')
        throw new InputError('No database user: config.php has no dbuser and none was given (db-user).');
    return connection;
}
/**
 * config.php's `apps_paths` as a list: PHP gives a list or (with keys) an object; entries
 * without a usable path are skipped; a relative path is taken within the installation.
 */
function parseAppsPaths(value, installDir) {
    if (value === null || typeof value !== 'object')
        return [];
    const found = [];
    for (const entry of Object.values(value)) {
        if (entry === null || typeof entry !== 'object')
            continue;
        const { path, url, writable } = entry;
        if (typeof path !== 'string' || path.trim() === '' || path.includes('\0'))
            continue;
        const absolute = external_node_path_namespaceObject.posix.normalize(path.startsWith('/') ? path : `${installDir}/${path}`);
        const normal = absolute.length > 1 ? absolute.replace(/\/+$/, '') : absolute;
        if (found.some((f) => f.path === normal))
            continue;
        found.push({
            path: normal,
            url: typeof url === 'string' ? url : '',
            writable: writable === true || writable === 'true' || writable === 1,
        });
    }
    return found;
}
/** ownCloud and Nextcloud mark their data directory; which marker says which product. */
function productOf(markers, version) {
    if (markers.ncdata)
        return 'nextcloud';
    // Nextcloud before 21 used .ocdata too; its versions start at 9 and passed ownCloud's 10 long ago.
    const major = Number(version.split('.')[0]);
    return major >= 11 ? 'nextcloud' : 'owncloud';
}

;// CONCATENATED MODULE: ./src/steps/discover.ts
// Discovery: what the instance is, read from its own config.php with PHP on the host (the
// faithful way: config.php is PHP, and every ownCloud host has PHP). Like ownCloud, it
// merges config/*.config.php over config.php.






// PHP's own messages about config.php quote its text (a syntax error names the token it
// choked on, which may be part of the password), so PHP prints none (display_errors=0) and
// the script reports a failure as JSON naming only the kind, file and line.
const READ_CONFIG_BODY = `
error_reporting(E_ALL & ~E_DEPRECATED & ~E_NOTICE);
$done = false;
$fail = function ($kind, $file, $line = 0, $class = '') use (&$done) {
  $done = true;
  echo json_encode(['failure' => ['kind' => $kind, 'file' => $file, 'line' => $line, 'class' => $class]]);
  exit(3);
};
register_shutdown_function(function () use (&$done, $fail) {
  $error = error_get_last();
  if (!$done && $error !== null && in_array($error['type'], [E_ERROR, E_PARSE, E_CORE_ERROR, E_COMPILE_ERROR], true)) { while (ob_get_level() > 0) ob_end_clean(); $fail('fatal', $error['file'], $error['line']); }
});
$merged = [];
$files = array_merge([$dir . '/config.php'], glob($dir . '/*.config.php') ?: []);
foreach ($files as $file) {
  if (!is_readable($file)) $fail('unreadable', $file);
  $CONFIG = null;
  ob_start();
  try {
    $ok = include $file;
  } catch (ParseError $e) {
    ob_end_clean();
    $fail('syntax', $e->getFile(), $e->getLine());
  } catch (Throwable $e) {
    ob_end_clean();
    $fail('error', $e->getFile(), $e->getLine(), get_class($e));
  }
  ob_end_clean();
  if ($ok === false) $fail('unreadable', $file);
  if (!is_array($CONFIG)) $fail('no-config', $file);
  $merged = array_merge($merged, $CONFIG);
}
echo json_encode(array_intersect_key($merged, array_flip($keys)));
$done = true;
`;
/** Reads the config files of a directory on the host: argv 1 the config dir, argv 2 the keys. */
const READ_CONFIG = `$dir = $argv[1]; $keys = json_decode($argv[2], true);\n${READ_CONFIG_BODY}`;
/**
 * Reads config files given on stdin (JSON: files by name, keys), e.g. a backup's, in a
 * private directory that is removed at the end: the password in them never reaches argv.
 */
const READ_GIVEN_CONFIG = `
$given = json_decode(stream_get_contents(STDIN), true);
$keys = $given['keys'];
$dir = sys_get_temp_dir() . '/owncloud-backup-config-' . bin2hex(random_bytes(8));
umask(077);
if (!mkdir($dir, 0700)) exit(4);
register_shutdown_function(function () use ($dir) {
  foreach (glob($dir . '/*') ?: [] as $file) unlink($file);
  rmdir($dir);
});
foreach ($given['files'] as $name => $text) {
  if (basename($name) !== $name || $name === '' || $name[0] === '.') exit(4);
  file_put_contents($dir . '/' . $name, $text);
}
${READ_CONFIG_BODY}`;
/**
 * The message for the reading script's own failure report (exit 3), built from the kind,
 * file and line only, never from PHP's text; undefined when stdout is not such a report.
 */
function configReadFailure(stdout, owner) {
    let report;
    try {
        report = JSON.parse(stdout).failure;
    }
    catch {
        return undefined;
    }
    if (typeof report !== 'object' || report === null)
        return undefined;
    const { kind, file, line, class: errorClass } = report;
    const where = typeof file === 'string' ? file : 'config.php';
    const onLine = typeof line === 'number' && line > 0 ? ` on line ${line}` : '';
    switch (kind) {
        case 'syntax':
            return `${where} has a PHP syntax error${onLine}: fix it (php -l ${where} shows where).`;
        case 'error':
            return `${where} stops with a PHP ${typeof errorClass === 'string' && /^[\w\\]+$/.test(errorClass) ? errorClass : 'error'}${onLine} when loaded.`;
        case 'fatal':
            return `${where} stops PHP with a fatal error${onLine} when loaded.`;
        case 'unreadable':
            return `${where} cannot be read by ${owner} (who runs occ): check its owner and mode.`;
        case 'no-config':
            return `${where} does not define a $CONFIG array: is it an ownCloud config file?`;
        default:
            return undefined;
    }
}
/** Whether a path exists, as seen by the instance's owner (who can see into its data dir). */
async function existsOnHost(host, owner, test, path) {
    const result = await host.run(asUser(host.account, owner, ['test', test, path]));
    const transport = host.transportFailure(result);
    if (transport)
        throw new LinkError(transport);
    return result.exitCode === 0;
}
async function discoverInstance(host, plan, secrets) {
    const installDir = plan.owncloudDir;
    const configDir = `${installDir}/config`;
    const configPath = `${configDir}/config.php`;
    const stat = await host.run(['stat', '-c', '%U', '--', configPath]);
    if (stat.exitCode !== 0) {
        const transport = host.transportFailure(stat);
        if (transport)
            throw new LinkError(transport);
        if (!(await existsOnHost(host, host.account, '-d', installDir)))
            throw new InputError(`owncloud-dir '${installDir}' does not exist on ${host.label}.`);
        throw new InputError(`owncloud-dir '${installDir}' has no config/config.php on ${host.label}: is it an ownCloud installation?`);
    }
    const configOwner = stat.stdout.trim();
    const owner = plan.occUser ?? configOwner;
    // Everything below runs as the owner; an SSH user that is someone else needs sudo for it.
    if (host.account !== 'root' && host.account !== owner)
        await requirePasswordlessSudo(host, owner);
    const read = await host.run(configReader(host, owner, READ_CONFIG, [configDir, JSON.stringify(CONFIG_KEYS)]));
    const config = parseConfigRead(host, read, owner, configPath);
    // A secret from the moment it is known.
    secrets.add(typeof config.dbpassword === 'string' ? config.dbpassword : undefined);
    const invalid = invalidConfigValue(config);
    if (invalid)
        throw new InputError(invalid);
    if (config.installed === false)
        throw new InputError(`${configPath} says the instance is not installed (installed => false): nothing to back up.`);
    // config.php's value may carry a trailing slash or doubled ones: one spelling from here on.
    const dataDir = external_node_path_namespaceObject.posix
        .normalize(plan.dataDir ??
        (typeof config.datadirectory === 'string' && config.datadirectory
            ? config.datadirectory
            : `${installDir}/data`))
        .replace(/(.)\/+$/, '$1');
    // The markers and the directory itself, in one question to the host.
    const [ocdata, ncdata, dir] = await inspectPaths(host, owner, [
        `${dataDir}/.ocdata`,
        `${dataDir}/.ncdata`,
        dataDir,
    ]);
    const markers = { ocdata: ocdata.kind !== 'missing', ncdata: ncdata.kind !== 'missing' };
    if (!markers.ocdata && !markers.ncdata) {
        const where = plan.dataDir ? 'data-dir' : "config.php's datadirectory";
        if (dir.kind !== 'dir')
            throw new InputError(`The data directory '${dataDir}' (${where}) does not exist on ${host.label}.`);
        throw new InputError(`The data directory '${dataDir}' (${where}) has neither .ocdata (ownCloud) nor .ncdata (Nextcloud): it is not an ownCloud data directory.`);
    }
    const version = typeof config.version === 'string' ? config.version : '';
    const database = resolveDatabase(config, plan.database, dataDir);
    secrets.add(database.password);
    return {
        product: productOf(markers, version),
        version,
        instanceId: typeof config.instanceid === 'string' ? config.instanceid : '',
        theme: typeof config.theme === 'string' ? config.theme : '',
        installDir,
        configPath,
        owner,
        dataDir,
        maintenance: config.maintenance === true,
        database,
        appsPaths: parseAppsPaths(config.apps_paths, installDir),
    };
}
/**
 * The values of config files that are not on the host yet (a backup's config/), read there
 * with PHP as the given user, exactly as ownCloud would read them.
 */
async function readGivenConfig(host, user, files, what) {
    const read = await host.run(configReader(host, user, READ_GIVEN_CONFIG), {
        input: JSON.stringify({ files, keys: CONFIG_KEYS }),
    });
    return parseConfigRead(host, read, user, what);
}
/** PHP on the host running a config reading script as the given user, printing no error text. */
function configReader(host, user, script, args = []) {
    return asUser(host.account, user, [
        'php',
        '-d',
        'display_errors=0',
        '-d',
        'log_errors=0',
        '-r',
        script,
        ...(args.length > 0 ? ['--', ...args] : []),
    ]);
}
function parseConfigRead(host, read, owner, configPath) {
    if (read.exitCode !== 0) {
        const transport = host.transportFailure(read);
        if (transport)
            throw new LinkError(transport);
        const failure = configReadFailure(read.stdout, owner);
        if (failure)
            throw new BackupError(failure);
        // Not PHP's words (it prints none): the shell's or sudo's, e.g. php missing.
        throw new BackupError(`Could not read ${configPath} with PHP on ${host.label}: ${stderrTail(read.stderr) || `php exited with ${read.exitCode}`}`);
    }
    try {
        const parsed = JSON.parse(read.stdout);
        // PHP encodes an empty array as [] rather than {}.
        return (Array.isArray(parsed) ? {} : parsed);
    }
    catch {
        throw new BackupError(`PHP printed something other than the configuration when reading ${configPath}.`);
    }
}
/**
 * An SSH user that is neither root nor the instance's owner runs occ (as the owner) and
 * tar (to read every file) through sudo, which must not ask for a password.
 */
async function requirePasswordlessSudo(host, owner) {
    const result = await host.run(['sudo', '-n', 'true']);
    if (result.exitCode !== 0)
        throw new BackupError(`The SSH user ${host.account} on ${host.label} is neither root nor ${owner} and cannot use sudo without a password (${stderrTail(result.stderr) || 'sudo -n failed'}): connect as root or ${owner}, or allow it passwordless sudo.`);
}

;// CONCATENATED MODULE: ./src/steps/maintenance.ts
// Maintenance mode done right: note the state the administrator left, switch it on for the
// dump, and afterwards put back exactly that prior state, on every path out (success,
// failure, interruption), retrying through a dead link for a while before giving up loudly.




/** argv of `php occ ...` as the right user. */
function occCommand(host, occ, args) {
    return asUser(host.account, occ.user, ['php', `${occ.installDir}/occ`, ...args]);
}
/** Reads `occ maintenance:mode`'s answer: "Maintenance mode is currently enabled|disabled". */
function parseMaintenanceState(output) {
    const match = /maintenance mode is currently (enabled|disabled)/i.exec(output);
    return match ? match[1].toLowerCase() === 'enabled' : undefined;
}
// Switches maintenance mode and reads it back in one command on the host (one round trip):
// argv 1 is the flag (--on, --off), the rest `occ maintenance:mode` as the right user. The
// switch's own words and exit status are kept; only a switch that succeeded is followed by
// the SWITCHED_MARK line (on a line of its own whatever a login script printed before it)
// and the state occ reads then (occ's own answer and exit status).
const SWITCHED_MARK = 'owncloud-backup: switched';
const SWITCH_AND_READ = `flag=$1; shift
said=$("$@" "$flag" 2>&1) || { status=$?; printf '%s\\n' "$said"; exit "$status"; }
printf '\\n%s\\n' '${SWITCHED_MARK}'
exec "$@"`;
/** argv that switches maintenance mode (`--on` or `--off`) and then prints the state occ reads. */
function switchAndReadCommand(host, occ, flag) {
    return ['sh', '-c', SWITCH_AND_READ, 'sh', flag, ...occCommand(host, occ, ['maintenance:mode'])];
}
class MaintenanceGuard {
    window = { switchedByUs: false, priorState: false };
    restored = false;
    host;
    /** Where occ is and who runs it. */
    target;
    log;
    restoreRetrySeconds;
    record;
    constructor(host, occ, log, restoreRetrySeconds = 60, 
    /** Told each change before it happens (and once it is confirmed), to persist it. */
    record = () => { }) {
        this.host = host;
        this.target = occ;
        this.log = log;
        this.restoreRetrySeconds = restoreRetrySeconds;
        this.record = record;
    }
    note(phase) {
        this.record({
            phase,
            switchedByUs: this.window.switchedByUs,
            priorState: this.window.priorState,
            installDir: this.target.installDir,
            occUser: this.target.user,
        });
    }
    async occRun(args, shielded = false) {
        const result = await this.host.run(occCommand(this.host, this.target, args), {
            shielded,
            timeoutMs: 120_000,
        });
        const transport = this.host.transportFailure(result);
        if (transport)
            throw new LinkError(transport);
        if (result.exitCode !== 0)
            throw new BackupError(`occ ${args.join(' ')} failed on ${this.host.label} (exit ${result.exitCode}): ${stderrTail(`${result.stdout}\n${result.stderr}`)}`);
        return result.stdout;
    }
    async state(shielded = false) {
        return this.stateFrom(await this.occRun(['maintenance:mode'], shielded));
    }
    stateFrom(output) {
        const state = parseMaintenanceState(output);
        if (state === undefined)
            throw new BackupError(`occ maintenance:mode answered something unexpected: ${stderrTail(output)}`);
        return state;
    }
    /**
     * Sends `--on` or `--off` and reads the state back, in one command on the host: the state
     * occ reads after the switch. Shielded: an occ killed halfway through rewriting config.php
     * would leave it truncated. Fails as the two separate calls would: on the switch's failure
     * with its words, then on the reading's.
     */
    async switchAndRead(flag) {
        const result = await this.host.run(switchAndReadCommand(this.host, this.target, flag), {
            shielded: true,
            timeoutMs: 240_000,
        });
        const transport = this.host.transportFailure(result);
        if (transport)
            throw new LinkError(transport);
        const [switched, read] = splitAt(result.stdout, SWITCHED_MARK);
        const failed = (args, output) => new BackupError(`occ ${args} failed on ${this.host.label} (exit ${result.exitCode}): ${stderrTail(`${output}\n${result.stderr}`)}`);
        if (read === undefined)
            throw failed(`maintenance:mode ${flag}`, switched);
        if (result.exitCode !== 0)
            throw failed('maintenance:mode', read);
        return this.stateFrom(read);
    }
    /**
     * For a run that switched maintenance mode on, or may have (the action's post step, after
     * the main step was killed): asks occ for the actual state, and puts the prior state back
     * if it differs. Returns what it found.
     */
    static async recover(host, record, log, restoreRetrySeconds) {
        const guard = new MaintenanceGuard(host, { installDir: record.installDir, user: record.occUser }, log, restoreRetrySeconds);
        guard.window.priorState = record.priorState;
        // The post step runs right after main: a state other than the prior one is main's doing.
        if ((await guard.state(true)) === record.priorState)
            return 'was-prior-state';
        guard.window.switchedByUs = true;
        await guard.restore();
        return 'restored';
    }
    /** Switches maintenance mode on (if it is not on already) and confirms it. */
    async enable() {
        this.window.priorState = await this.state();
        if (this.window.priorState) {
            this.note('restored');
            this.log('Maintenance mode was already on; it stays on afterwards, as it was found.');
            return;
        }
        // From here on the instance is (or may be) in maintenance mode: restore() must undo it,
        // and a process that outlives this one must know it, before the command is even sent.
        this.window.switchedByUs = true;
        this.note('switching-on');
        this.window.enabledAt = new Date();
        if (!(await this.switchAndRead('--on')))
            throw new BackupError('occ maintenance:mode --on did not switch maintenance mode on.');
        this.note('on');
        this.log('Maintenance mode switched on.');
    }
    /**
     * Puts back the prior state. Safe to call more than once and on any path; retries for a
     * while (the link may come back); throws only when the instance is left in a state
     * other than the prior one.
     */
    async restore() {
        if (this.restored || !this.window.switchedByUs) {
            this.window.restoredAt ??= new Date();
            return;
        }
        const deadline = Date.now() + this.restoreRetrySeconds * 1000;
        let lastError;
        for (let attempt = 1;; attempt++) {
            try {
                if (await this.switchAndRead('--off'))
                    throw new BackupError('occ maintenance:mode --off did not switch maintenance mode off.');
                this.restored = true;
                this.window.restoredAt = new Date();
                this.note('restored');
                this.log('Maintenance mode switched off again (its prior state).');
                return;
            }
            catch (error) {
                lastError = error;
                if (Date.now() >= deadline)
                    break;
                this.log(`Could not switch maintenance mode off yet (attempt ${attempt}), retrying: ${error instanceof Error ? error.message : String(error)}`);
                await (0,promises_namespaceObject.setTimeout)(Math.min(1000 * attempt, 5000));
            }
        }
        throw new MaintenanceNotRestoredError(`MAINTENANCE MODE IS STILL ON on ${this.host.label}: switching it off failed (${lastError instanceof Error ? lastError.message : String(lastError)}). ` +
            `Run: sudo -u ${this.target.user} php ${this.target.installDir}/occ maintenance:mode --off`);
    }
    /** Seconds the instance spent in maintenance mode because of this run (0 when it was on already). */
    seconds() {
        const { enabledAt, restoredAt } = this.window;
        if (!enabledAt)
            return 0;
        return ((restoredAt ?? new Date()).getTime() - enabledAt.getTime()) / 1000;
    }
}
/** The lines before the first `mark` line and those after it (undefined without one). */
function splitAt(text, mark) {
    const lines = text.split('\n');
    const at = lines.indexOf(mark);
    if (at < 0)
        return [text, undefined];
    return [lines.slice(0, at).join('\n'), lines.slice(at + 1).join('\n')];
}

;// CONCATENATED MODULE: external "node:readline"
const external_node_readline_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:readline");
;// CONCATENATED MODULE: ./src/steps/client-query.ts



/** A stop after `seconds` of silence, counted from when `after` settles (when given). */
class SilenceTimer {
    fired = false;
    timer;
    armed = false;
    ended = false;
    ms;
    onFire;
    constructor(timeout, onFire) {
        this.ms = (timeout?.seconds ?? 0) * 1000;
        this.onFire = onFire;
        if (!timeout)
            return;
        const arm = () => {
            this.armed = true;
            this.touch();
        };
        if (timeout.after)
            void timeout.after.then(arm, arm);
        else
            arm();
    }
    touch() {
        if (!this.armed || this.ended)
            return;
        clearTimeout(this.timer);
        this.timer = setTimeout(() => {
            this.fired = true;
            this.onFire();
        }, this.ms);
    }
    stop() {
        this.ended = true;
        clearTimeout(this.timer);
    }
}
function timedOutMessage(what, timeout) {
    return `${what} went on for ${timeout.seconds} s without output${timeout.after ? ' after the dump ended' : ''} and was stopped (dump-timeout): is the database server answering?`;
}
/** Why a finished client invocation failed, in words, or undefined when it succeeded. */
function clientFailure(host, engine, context, command, result, purpose) {
    const transport = host.transportFailure(result);
    if (transport)
        return `${purpose.what} failed: ${transport}`;
    if (result.exitCode === 127 && /not found/i.test(result.stderr))
        return `${host.label} has no ${command.program} to ${purpose.need}: install it there.`;
    if (result.exitCode !== 0) {
        const cause = engine.explainFailure(result.stderr, context.connection) ??
            (stderrTail(result.stderr) || 'no message');
        return `${purpose.what} (${command.program}) failed with exit code ${result.exitCode}: ${cause}`;
    }
    return undefined;
}
/** The message of output a client printed that its parser could not read. */
function unexpectedOutput(purpose, command, error) {
    return `${purpose.what} (${command.program}) gave unexpected output: ${error instanceof Error ? error.message : String(error)}`;
}
/**
 * Runs one query command on the host and parses its output. Stopped through the signal
 * (InterruptedError), or by the timeout when given.
 */
async function queryOnHost(host, engine, context, command, options) {
    const { purpose, signal, timeout } = options;
    const abort = new AbortController();
    const cancel = () => abort.abort();
    signal?.addEventListener('abort', cancel, { once: true });
    const silence = new SilenceTimer(timeout, cancel);
    let result;
    try {
        result = await host.run(guardedCommand(command.argv, command.delivery), {
            input: secretLine(command.secret),
            keepStdinOpen: true,
            signal: abort.signal,
        });
    }
    finally {
        silence.stop();
        signal?.removeEventListener('abort', cancel);
    }
    if (signal?.aborted)
        throw new InterruptedError();
    if (silence.fired)
        throw new BackupError(timedOutMessage(purpose.what, timeout));
    const failure = clientFailure(host, engine, context, command, result, purpose);
    if (failure)
        throw new BackupError(failure);
    try {
        return options.parse(result.stdout);
    }
    catch (error) {
        throw new BackupError(unexpectedOutput(purpose, command, error));
    }
}

;// CONCATENATED MODULE: ./src/steps/encryption.ts
// Server-side encryption: what the instance's app config says about it, and, when it is on,
// an index of the file cache entries of encrypted files (storage, path, the `encrypted`
// version counter, `size`, `unencrypted_size`), taken inside the maintenance window beside
// the dump. Restoring a single encrypted file needs those values exactly as they were: a
// files:scan of the restored file writes its encrypted size and `encrypted = 0`.
// Both run with the engine's own client and the dump's credentials (secret on stdin); the
// index streams from the client through a line parser into the compressor, one line at a
// time, so millions of rows never sit in memory.










/** Reads the encryption settings from `<prefix>appconfig` on the host, in one invocation. */
async function readEncryptionState(host, engine, context, signal, timeout) {
    return queryOnHost(host, engine, context, engine.encryptionStateCommand(context), {
        purpose: {
            what: `Reading the encryption settings of the ${engine.type} database`,
            need: `read the ${engine.type} database's encryption settings`,
        },
        parse: parseEncryptionSettings,
        signal,
        timeout,
    });
}
/** Client output lines in, JSON lines out (one per encrypted file), counted. */
class IndexLines extends external_node_stream_namespaceObject.Transform {
    files = 0;
    /** The first line that could not be read. */
    failure;
    partial = '';
    onData;
    constructor(onData) {
        super();
        this.onData = onData;
    }
    record(line) {
        const entry = parseEncryptedFileLine(line);
        if (!entry)
            return '';
        this.files++;
        return `${JSON.stringify(entry)}\n`;
    }
    _transform(chunk, _encoding, callback) {
        this.onData();
        // Only hex digits, digits and tabs: ASCII, so no character spans two chunks.
        const lines = (this.partial + chunk.toString('latin1')).split('\n');
        this.partial = lines.pop() ?? '';
        try {
            callback(null, lines.map((line) => this.record(line)).join(''));
        }
        catch (error) {
            this.failure ??= error;
            callback(error);
        }
    }
    _flush(callback) {
        try {
            callback(null, this.record(this.partial));
        }
        catch (error) {
            this.failure ??= error;
            callback(error);
        }
    }
}
/**
 * Writes the index of the encrypted files' file cache entries to `path`: JSON lines
 * (EncryptedFileEntry), compressed. One client invocation, streamed.
 */
async function writeEncryptionIndex(host, engine, context, options) {
    const purpose = {
        what: `Listing the encrypted files in the ${engine.type} database's file cache`,
        need: `list the encrypted files of the ${engine.type} database`,
    };
    const command = engine.encryptedFilesCommand(context);
    const abort = new AbortController();
    const cancel = () => abort.abort();
    options.signal?.addEventListener('abort', cancel, { once: true });
    const silence = new SilenceTimer(options.timeout, cancel);
    const query = host.stream(guardedCommand(command.argv, command.delivery), {
        input: secretLine(command.secret),
        keepStdinOpen: true,
        signal: abort.signal,
    });
    const lines = new IndexLines(() => silence.touch());
    try {
        const [written, result] = await Promise.allSettled([
            // A line that cannot be read, or a failed write, stops the client (it would wait
            // forever for its output to be read).
            compressToFile(query.stdout.pipe(lines), options.compression, options.path, undefined, options.encryptTo).catch((error) => {
                query.kill();
                throw error;
            }),
            query.done,
        ]);
        silence.stop();
        if (options.signal?.aborted)
            throw new InterruptedError();
        if (silence.fired)
            throw new BackupError(timedOutMessage(purpose.what, options.timeout));
        if (result.status === 'rejected')
            throw result.reason;
        // A line that could not be read stopped the client: that line is the cause.
        if (lines.failure)
            throw new BackupError(unexpectedOutput(purpose, command, lines.failure));
        const failure = clientFailure(host, engine, context, command, result.value, purpose);
        if (failure)
            throw new BackupError(failure);
        if (written.status === 'rejected')
            throw written.reason;
        return { file: written.value, files: lines.files };
    }
    catch (error) {
        silence.stop();
        query.kill();
        (0,external_node_fs_namespaceObject.rmSync)(options.path, { force: true });
        throw error;
    }
    finally {
        options.signal?.removeEventListener('abort', cancel);
    }
}
/**
 * The encryption record of a backup: the settings, and when encryption is on, the index.
 * The index's clock (dump-timeout of silence) starts once the dump beside it has ended.
 */
async function recordEncryption(host, engine, context, options) {
    const state = await readEncryptionState(host, engine, context, options.signal, options.timeout);
    if (!state.enabled)
        return { state };
    const index = await writeEncryptionIndex(host, engine, context, {
        path: options.indexPath,
        compression: options.compression,
        ...(options.encryptTo ? { encryptTo: options.encryptTo } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.timeout ? { timeout: options.timeout } : {}),
    });
    return { state, index };
}
/**
 * The backup's index of encrypted files, read back here (none when the backup has none).
 * Entries whose names were not UTF-8 (recorded lossily) or without a size are left out: no
 * restored file can be matched to them exactly.
 */
async function readEncryptionIndex(directory, manifest, 
/** Which entries to keep (an index can hold millions; they stream through). */
wanted, 
/** The age identity file, for an encrypted backup. */
identityFile) {
    const name = manifest.encryption?.index?.name;
    if (!name)
        return [];
    const archive = manifest.archives.find((a) => a.name === name);
    if (!archive)
        throw new BackupError(`The manifest does not list the index ${name}.`);
    const path = (0,external_node_path_namespaceObject.join)(directory, name);
    const reading = openArchive(archiveFile(directory, archive, identityFile));
    const files = [];
    let unreadable;
    for await (const line of (0,external_node_readline_namespaceObject.createInterface)({ input: reading.stdout, crlfDelay: Infinity })) {
        if (line.trim() === '')
            continue;
        let entry;
        try {
            entry = JSON.parse(line);
        }
        catch {
            unreadable ??= line.slice(0, 200);
            continue;
        }
        if (entry.pathHex !== undefined || entry.storageHex !== undefined || entry.size === null)
            continue;
        if (!wanted(entry.storage, entry.path))
            continue;
        files.push({
            storage: entry.storage,
            path: entry.path,
            encrypted: entry.encrypted,
            size: entry.size,
            unencryptedSize: entry.unencrypted_size ?? 0,
        });
    }
    const result = await reading.done;
    if (!result.ok || unreadable !== undefined)
        throw new BackupError(`Reading ${path} failed: ${unreadable !== undefined ? `a line is not JSON: '${unreadable}'` : result.problem}`);
    return files;
}

;// CONCATENATED MODULE: ./src/steps/row-counts.ts

/**
 * Counts the rows of every prefixed table of the instance's database on the host, in one
 * client invocation. Stopped through the signal, or by the timeout when given.
 */
async function countRows(host, engine, context, signal, timeout) {
    return queryOnHost(host, engine, context, engine.rowCountsCommand(context), {
        purpose: {
            what: `Counting the rows of the ${engine.type} database's tables`,
            need: `count the rows of the ${engine.type} database`,
        },
        parse: (stdout) => engine.parseRowCounts(stdout),
        signal,
        timeout,
    });
}

;// CONCATENATED MODULE: ./src/steps/previous-state.ts
/** The hidden, root-only directory one restore moves the previous state into. */
function containerName(stamp) {
    return `.owncloud-restore-previous-${stamp}`;
}
/** A stamp for container names: UTC, sortable, no characters a shell or URL minds. */
function restoreStamp(date) {
    return date
        .toISOString()
        .replace(/[-:]/g, '')
        .replace(/\.\d+Z$/, 'Z');
}
/** The paths to move, without those inside another one (they move with it). Pure. */
function outermostPaths(paths) {
    const unique = [...new Set(paths)].sort();
    return unique.filter((path) => !unique.some((other) => other !== path && (other === '/' || path.startsWith(`${other}/`))));
}
/** Where each path goes (pure): into a container beside it, or, for a mount point, inside it. */
function planMoves(paths, stamp) {
    return paths.map(({ path, exists, mountPoint }) => {
        if (!exists)
            return { original: path, aside: '', how: 'absent' };
        const slash = path.lastIndexOf('/');
        const parent = slash <= 0 ? '/' : path.slice(0, slash);
        const base = path.slice(slash + 1);
        return mountPoint
            ? { original: path, aside: `${path}/${containerName(stamp)}`, how: 'entries' }
            : {
                original: path,
                aside: `${parent === '/' ? '' : parent}/${containerName(stamp)}/${base}`,
                how: 'path',
            };
    });
}
/** The container a move uses (the aside path's directory, or the aside path itself). */
function containerOf(move) {
    if (move.how === 'absent')
        return undefined;
    return move.how === 'entries' ? move.aside : move.aside.slice(0, move.aside.lastIndexOf('/'));
}
// Each script runs on the host as root, with the moves as arguments in threes
// (how, original, aside); each is safe to run again after an interruption.
/** For each path: exists? (e/-) and a mount point? (m/-), NUL-separated. */
const PROBE_PATHS = `
for p; do
  if [ -e "$p" ] || [ -L "$p" ]; then e=e; else e=-; fi
  m=-
  if [ -d "$p" ] && [ ! -L "$p" ]; then
    parent=$(dirname -- "$p")
    if [ "$(stat -c %d -- "$p")" != "$(stat -c %d -- "$parent")" ]; then m=m; fi
  fi
  printf '%s%s\\0' "$e" "$m"
done
`.trim();
const MOVE_ASIDE = `
set -e
while [ $# -ge 3 ]; do
  how=$1 original=$2 aside=$3; shift 3
  if [ "$how" = absent ]; then
    continue
  elif [ "$how" = entries ]; then
    mkdir -p -m 0700 -- "$aside"
    name=$(basename -- "$aside")
    find "$original" -mindepth 1 -maxdepth 1 ! -name "$name" -exec mv -t "$aside" -- {} +
  else
    container=$(dirname -- "$aside")
    mkdir -p -m 0700 -- "$container"
    if [ -e "$original" ] || [ -L "$original" ]; then mv -T -- "$original" "$aside"; fi
  fi
done
`.trim();
/**
 * Puts moved paths back: whatever the restore wrote in their place goes first. A path that
 * did not exist before the restore (how 'absent') is only removed.
 */
const PUT_BACK = `
set -e
while [ $# -ge 3 ]; do
  how=$1 original=$2 aside=$3; shift 3
  case $how in
    entries)
      [ -d "$aside" ] || continue
      name=$(basename -- "$aside")
      # Once the restored entries are gone, the marker says so: run again after an
      # interruption, the entries already moved back are not taken for restored ones.
      if [ ! -e "$aside/.owncloud-restore-putting-back" ]; then
        find "$original" -mindepth 1 -maxdepth 1 ! -name "$name" -exec rm -rf -- {} +
        : > "$aside/.owncloud-restore-putting-back"
      fi
      find "$aside" -mindepth 1 -maxdepth 1 ! -name .owncloud-restore-putting-back -exec mv -t "$original" -- {} +
      rm -f -- "$aside/.owncloud-restore-putting-back"
      rmdir -- "$aside"
      ;;
    path)
      [ -e "$aside" ] || [ -L "$aside" ] || continue
      rm -rf -- "$original"
      mv -T -- "$aside" "$original"
      rmdir -- "$(dirname -- "$aside")" 2>/dev/null || true
      ;;
    absent)
      rm -rf -- "$original"
      ;;
  esac
done
`.trim();
/** Removes whole containers (the previous state, once it is no longer needed); prints bytes freed. */
const DISCARD = `
total=0
for c; do
  [ -e "$c" ] || continue
  size=$(du -s -x --bytes -- "$c" | cut -f1)
  rm -rf -- "$c"
  total=$((total + size))
done
echo "$total"
`.trim();
/** Sizes in bytes of the given containers (for the closing message). */
const SIZE = `du -s -x --bytes -c -- "$@" | tail -n 1 | cut -f1`;
function moveArguments(moves) {
    return moves.flatMap((m) => [m.how, m.original, m.aside]);
}
/**
 * Where a restore step that writes on the host (tar, the database client) leaves its pid,
 * in the container: if the link dies, that process may still be working through what
 * reached the host, and putting the previous state back must first stop it.
 */
function stepPidFile(container, step) {
    return `${container}/.restore-${step}.pid`;
}
/** argv that writes its own pid to a file, then becomes the command (same pid). */
function recordingPid(pidFile, argv) {
    return ['sh', '-c', 'echo $$ > "$1"; shift; exec "$@"', 'sh', pidFile, ...argv];
}
/** Stops the processes the pid files name (TERM, then KILL after 10 s) and removes the files. */
const STOP_STEPS = `
for f; do
  [ -f "$f" ] || continue
  pid=$(cat -- "$f")
  case $pid in ''|*[!0-9]*) rm -f -- "$f"; continue ;; esac
  if kill -TERM "$pid" 2>/dev/null; then
    n=0
    while kill -0 "$pid" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f -- "$f"
done
`.trim();

;// CONCATENATED MODULE: ./src/steps/restore-database.ts
// The database side of a restore, for any engine: the client found on the host, SQL run
// with the secret on stdin, the backup's dump streamed from here into the client, the current
// database saved aside on the host, and how restored row counts are judged.









/** Drops whole lines matching a pattern from a text stream (line by line, memory flat). */
class LineFilter extends external_node_stream_namespaceObject.Transform {
    partial = '';
    dropped = 0;
    pattern;
    constructor(pattern) {
        super();
        this.pattern = pattern;
    }
    _transform(chunk, _encoding, callback) {
        const lines = (this.partial + chunk.toString('latin1')).split('\n');
        this.partial = lines.pop();
        const kept = lines.filter((line) => {
            if (!this.pattern.test(line))
                return true;
            this.dropped++;
            return false;
        });
        if (kept.length > 0)
            this.push(Buffer.from(`${kept.join('\n')}\n`, 'latin1'));
        callback();
    }
    _flush(callback) {
        if (this.partial !== '' && !this.pattern.test(this.partial))
            this.push(Buffer.from(this.partial, 'latin1'));
        callback();
    }
}
/** The engine's client on the host: the first of its programs found. */
async function findClient(host, engine) {
    const missing = await missingOnHost(host, [...engine.clients]);
    return engine.clients.find((c) => !missing.includes(c));
}
/** Runs SQL through a client with its secret on stdin (first line), never in argv. */
async function runSql(host, command, sql, doing, engine, connection, 
/** Interrupts it (the restore's own reset); a rollback's reset is shielded instead. */
signal) {
    const result = reached(host, await host.run(guardedInputCommand(command.argv, command.delivery), {
        input: secretLine(command.secret) + sql,
        ...(signal ? { signal } : { shielded: true }),
    }));
    if (signal?.aborted)
        throw new InterruptedError('The restore was interrupted.');
    if (result.exitCode !== 0)
        throw new BackupError(`${doing} failed (exit ${result.exitCode}): ${engine.explainFailure(result.stderr, connection) ?? (stderrTail(withoutStatements(result.stderr)) || 'no message')}`);
}
/**
 * A client's complaint without the statement it quotes: the SQL sent on stdin may hold a
 * password as a quoted literal (escaped, so the secrets registry would not recognise it).
 * psql quotes it on `LINE n:` lines (with a caret line below), MySQL after `near '`. Pure.
 */
function withoutStatements(stderr) {
    return stderr
        .split('\n')
        .filter((line) => !/^LINE \d+:/.test(line) && !/^\s*\^\s*$/.test(line))
        .map((line) => line.replace(/near '.*' at line (\d+)/, 'near (the statement is not shown) at line $1'))
        .join('\n');
}
/** A quick query with the given command (preflight), in the engine's own words when it fails. */
async function checkLogin(host, command) {
    return reached(host, await host.run(guardedCommand(command.argv, command.delivery), {
        input: secretLine(command.secret),
        keepStdinOpen: true,
        timeoutMs: 60_000,
    }));
}
/** Streams the backup's dump from here into the engine's client on the host. */
async function loadDump(options) {
    const { host, engine, context } = options;
    const command = engine.loadCommand(context);
    const client = options.pidFile ? recordingPid(options.pidFile, command.argv) : command.argv;
    const loader = host.stream([...options.root, ...guardedInputCommand(client, command.delivery)], {
        feedStdin: true,
        signal: options.signal,
    });
    loader.stdout.resume();
    const dump = options.dump;
    const decompress = 'open' in dump ? dump.open(options.signal) : openArchive(dump, options.signal);
    let bytes = 0;
    const counter = new external_node_stream_namespaceObject.Transform({
        transform(chunk, _encoding, callback) {
            bytes += chunk.length;
            options.progress.update({ bytes });
            callback(null, chunk);
        },
    });
    const filter = options.dropLines ? new LineFilter(options.dropLines) : undefined;
    loader.stdin.write(secretLine(command.secret));
    const feeding = (0,external_node_stream_promises_namespaceObject.pipeline)(filter
        ? [decompress.stdout, counter, filter, loader.stdin]
        : [decompress.stdout, counter, loader.stdin]).catch((error) => error);
    const [result, unpacked] = await Promise.all([loader.done, decompress.done]);
    await feeding;
    if (options.signal.aborted)
        throw new InterruptedError('The restore was interrupted.');
    const transport = host.transportFailure(result);
    if (transport)
        throw new LinkError(`Loading the database dump failed: ${transport}`);
    if (!unpacked.ok)
        throw new BackupError(`Reading ${'open' in dump ? dump.label : dump.path}: ${unpacked.problem}`);
    if (result.exitCode !== 0)
        throw new BackupError(`Loading the database dump (${context.client}) failed with exit code ${result.exitCode}: ${engine.explainFailure(result.stderr, context.connection) ?? (stderrTail(result.stderr) || 'no message')}`);
    return { bytes, dropped: filter?.dropped ?? 0 };
}
/**
 * The engine's commands name their client by the dump tool it comes with (mariadb beside
 * mariadb-dump, mysql beside mysqldump): the dump tool that goes with a client found.
 */
function toolOf(engine, client) {
    if (engine.type !== 'mysql')
        return { program: client, version: '' };
    return { program: client === 'mariadb' ? 'mariadb-dump' : 'mysqldump', version: '' };
}
/** Where two table → rows maps differ, in words (pure). */
function rowCountDifferences(recorded, counted) {
    const differences = [];
    for (const [table, rows] of Object.entries(recorded)) {
        if (!(table in counted))
            differences.push(`${table} is missing (${rows} rows at backup time)`);
        else if (counted[table] !== rows)
            differences.push(`${table} has ${counted[table]} rows, the backup counted ${rows}`);
    }
    for (const table of Object.keys(counted))
        if (!(table in recorded))
            differences.push(`${table} was not in the backup`);
    return differences;
}
/** The current database, dumped into a file on the host, and checked complete. */
async function dumpAside(host, root, engine, current, path, signal) {
    const missing = await missingOnHost(host, [...engine.programs]);
    const program = engine.programs.find((p) => !missing.includes(p));
    if (!program)
        throw new BackupError(`${host.label} has no ${engine.programs.join(' or ')} to save the current database first.`);
    const command = engine.dumpCommand({
        connection: current.database,
        tool: { program, version: '' },
        account: host.account,
        owner: current.owner,
    });
    const result = reached(host, await host.run([...root, ...guardedCommand(writingTo(path, command.argv), command.delivery)], {
        input: secretLine(command.secret),
        keepStdinOpen: true,
        signal,
    }));
    if (result.exitCode !== 0)
        throw new BackupError(`Saving the current database before the restore failed (exit ${result.exitCode}): ${engine.explainFailure(result.stderr, current.database) ?? (stderrTail(result.stderr) || 'no message')}`);
    const tail = await mustRun(host, [...root, 'tail', '-c', '4096', '--', path], 'Reading the saved database');
    const problem = engine.checkTail(tail.stdout);
    if (problem)
        throw new BackupError(`The saved current database is not complete: ${problem}.`);
}

;// CONCATENATED MODULE: ./src/steps/restore-test.ts
// Proof that a backup restores: on the runner (never on the ownCloud host), the dump is
// loaded into a throwaway database server this tool starts itself on a private socket in a
// private 0700 directory, every prefixed table's rows are counted and compared with the
// counts recorded inside the maintenance window, and the files archive is listed for
// config.php, the data directory's marker and every user's files/. The engine module says
// how its server is started (throwawaySetup); this step runs it and always stops it.














/**
 * Directories searched for the server programs after PATH, instead of the engine's usual
 * ones (e.g. /usr/lib/postgresql/VERSION/bin), separated by ':'; empty: PATH only.
 */
const SERVER_DIRS_ENV = 'OWNCLOUD_BACKUP_SERVER_DIRS';
const CONFIG_MEMBER = `${LAYOUT.install}/config/config.php`;
/** Collects ArchiveFacts from archive member names as tar lists them, one at a time. */
class ListingFacts {
    configPhp = false;
    marker = false;
    userFiles = new Set();
    add(name) {
        if (name === CONFIG_MEMBER)
            this.configPhp = true;
        else if (name === `${LAYOUT.data}/.ocdata` || name === `${LAYOUT.data}/.ncdata`)
            this.marker = true;
        else {
            const user = new RegExp(`^${LAYOUT.data}/([^/]+)/files/?$`).exec(name);
            if (user)
                this.userFiles.add(user[1]);
        }
    }
}
/** What the archive lacks, in words (pure). */
function archiveProblems(facts, users) {
    const problems = [];
    if (!facts.configPhp)
        problems.push(`the files archive has no ${CONFIG_MEMBER}`);
    if (!facts.marker)
        problems.push(`the files archive has no ${LAYOUT.data}/.ocdata (or .ncdata) marker`);
    const missing = users.filter((user) => !facts.userFiles.has(user));
    if (missing.length > 0)
        problems.push(`the files archive has no files/ directory for ${missing.length === 1 ? 'user' : 'users'} ${missing.join(', ')} (a home storage in the database)`);
    return problems;
}
/**
 * The directories searched after PATH: the engine's usual ones, or those the environment
 * names; a `*` in one is a version, newest first (pure, given the directory listings).
 */
function searchDirs(engine, env, list) {
    const path = (env.PATH ?? '').split(external_node_path_namespaceObject.delimiter).filter(Boolean);
    const extra = env[SERVER_DIRS_ENV] !== undefined
        ? env[SERVER_DIRS_ENV].split(external_node_path_namespaceObject.delimiter).filter(Boolean)
        : engine.throwawayDirs.flatMap((pattern) => expandVersionDir(pattern, list));
    return [...new Set([...path, ...extra])];
}
/** A directory pattern with one `*` (a version), matches newest first (pure, given `list`). */
function expandVersionDir(pattern, list) {
    const star = pattern.indexOf('*');
    if (star < 0)
        return [pattern];
    const parent = pattern.slice(0, pattern.lastIndexOf('/', star));
    const head = pattern.slice(parent.length + 1, star);
    const rest = pattern.slice(star + 1);
    const tail = rest.split('/')[0];
    const versions = list(parent)
        .filter((name) => name.startsWith(head) && name.endsWith(tail))
        .map((name) => name.slice(head.length, name.length - tail.length))
        .filter((version) => /^\d+(?:\.\d+)*$/.test(version));
    versions.sort((a, b) => compareVersions(b, a));
    return versions.map((version) => `${parent}/${head}${version}${rest}`);
}
function compareVersions(a, b) {
    const x = a.split('.').map(Number);
    const y = b.split('.').map(Number);
    for (let i = 0; i < Math.max(x.length, y.length); i++) {
        const d = (x[i] ?? 0) - (y[i] ?? 0);
        if (d !== 0)
            return d;
    }
    return 0;
}
/**
 * Finds each role's program: the first name found, looked for in the server's directory
 * first (initdb beside its postgres), then in `dirs` in order. Pure, given `exists`.
 */
function findPrograms(roles, dirs, exists) {
    const programs = {};
    for (const { role, names, optional } of roles) {
        const order = programs.server ? [(0,external_node_path_namespaceObject.dirname)(programs.server), ...dirs] : dirs;
        const found = names
            .map((name) => order.map((dir) => (0,external_node_path_namespaceObject.join)(dir, name)).find(exists))
            .find((path) => path !== undefined);
        if (found)
            programs[role] = found;
        else if (!optional)
            return { missing: names.join('/') };
    }
    return { programs };
}
function executable(path) {
    try {
        (0,external_node_fs_namespaceObject.accessSync)(path, external_node_fs_namespaceObject.constants.X_OK);
        return true;
    }
    catch {
        return false;
    }
}
function listDir(dir) {
    try {
        return (0,external_node_fs_namespaceObject.readdirSync)(dir);
    }
    catch {
        return [];
    }
}
/** This machine, with the throwaway server's directories first on PATH (the clients' names). */
function runnerWithPath(dirs) {
    const local = new LocalHost();
    const env = { PATH: [...dirs, process.env.PATH ?? ''].join(external_node_path_namespaceObject.delimiter) };
    return {
        label: local.label,
        account: local.account,
        run: (argv, options) => local.run(argv, { ...options, env: { ...options?.env, ...env } }),
        stream: (argv, options) => local.stream(argv, { ...options, env: { ...options?.env, ...env } }),
        transportFailure: () => undefined,
        close: () => local.close(),
    };
}
/** The longest unix socket path (sun_path holds 108 bytes with its NUL), less the socket's name. */
const SOCKET_DIR_LIMIT = 107 - '/.s.PGSQL.5432'.length;
/**
 * A new private (0700) directory for the throwaway server: under TMPDIR, or under /tmp when
 * TMPDIR is too deep for a unix socket path.
 */
function privateDir() {
    const name = 'owncloud-backup-restore-test-XXXXXX';
    const base = (0,external_node_path_namespaceObject.join)((0,external_node_os_namespaceObject.tmpdir)(), name).length <= SOCKET_DIR_LIMIT ? (0,external_node_os_namespaceObject.tmpdir)() : '/tmp';
    return (0,external_node_fs_namespaceObject.mkdtempSync)((0,external_node_path_namespaceObject.join)(base, name.slice(0, -6)));
}
/** A start-up problem: the test cannot run here (skipped), it says nothing about the backup. */
class CannotStart extends Error {
}
/** An unprivileged account to run a server that refuses root: postgres, else nobody. */
async function serviceAccount() {
    for (const name of ['postgres', 'nobody']) {
        const uid = await runProcess(['id', '-u', name]);
        const gid = await runProcess(['id', '-g', name]);
        if (uid.exitCode === 0 && gid.exitCode === 0)
            return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
    }
    throw new CannotStart('the runner is root and has no postgres or nobody account to run it as');
}
/** Runs the init commands and starts the server, waiting until it accepts clients. */
async function startServer(setup, dir, prefix, signal) {
    for (const argv of setup.init) {
        const result = await runProcess([...prefix, ...argv], { signal, cwd: dir });
        if (signal.aborted)
            throw new InterruptedError();
        if (result.exitCode !== 0)
            throw new CannotStart(`${argv[0].split('/').pop()} failed (exit ${result.exitCode}): ${stderrTail(result.stderr, 3) || stderrTail(result.stdout, 3) || 'no message'}`);
    }
    if (!setup.serverArgv)
        return undefined;
    const stopping = new AbortController();
    const stop = () => stopping.abort();
    signal.addEventListener('abort', stop, { once: true });
    let log = '';
    const server = streamProcess([...prefix, ...setup.serverArgv], {
        signal: stopping.signal,
        cwd: dir,
        onStderr: (text) => (log = (log + text).slice(-8192)),
    });
    server.stdout.resume();
    let exited;
    const done = server.done.then((result) => {
        exited = result.exitCode;
    });
    const running = {
        async stop() {
            stopping.abort();
            await done;
            signal.removeEventListener('abort', stop);
        },
    };
    const deadline = performance.now() + 120_000;
    for (;;) {
        if (signal.aborted) {
            await running.stop();
            throw new InterruptedError();
        }
        if (exited !== undefined) {
            // Its last words may still be on their way.
            await (0,promises_namespaceObject.setTimeout)(100);
            throw new CannotStart(`${setup.server} exited while starting (exit ${exited}): ${stderrTail(log, 3) || 'no message'}`);
        }
        const ready = await runProcess(setup.ready, { timeoutMs: 10_000 });
        if (ready.exitCode === 0)
            break;
        if (performance.now() > deadline) {
            await running.stop();
            throw new CannotStart(`${setup.server} did not accept clients within 120 s`);
        }
        await (0,promises_namespaceObject.setTimeout)(50);
    }
    if (setup.prepare) {
        const prepared = await runProcess(setup.prepare.argv, { input: setup.prepare.sql });
        if (prepared.exitCode !== 0) {
            await running.stop();
            throw new CannotStart(`preparing the throwaway database failed: ${stderrTail(prepared.stderr, 3) || 'no message'}`);
        }
    }
    return running;
}
/** Lists the files archive, collecting what the test checks. */
async function listArchive(file, signal) {
    const facts = new ListingFacts();
    const tar = tarOnArchive(file, ['--list', '--file=-'], { signal });
    let partial = '';
    for await (const chunk of tar.stdout) {
        const lines = (partial + chunk.toString('utf8')).split('\n');
        partial = lines.pop() ?? '';
        lines.forEach((line) => facts.add(line));
    }
    if (partial !== '')
        facts.add(partial);
    const listed = await tar.done;
    if (signal.aborted)
        throw new InterruptedError();
    if (!listed.ok)
        throw new Error(`listing the files archive failed: ${listed.problem}`);
    return facts;
}
/** The line a skipped test prints and records. */
function skippedLine(reason) {
    return `restore test skipped: ${reason}`;
}
/**
 * Runs the restore test. Never throws for what it finds (a failed check is a 'failed'
 * record; a runner without the server programs, or one that cannot start them, 'skipped');
 * throws InterruptedError when the signal fires. The server is stopped and its directory
 * removed in every case.
 */
async function runRestoreTest(engine, subject, options) {
    const started = performance.now();
    const { signal } = options;
    const env = options.env ?? process.env;
    const elapsed = () => Math.round(performance.now() - started) / 1000;
    const empty = { tables: 0, rows: 0, users: 0 };
    if (typeof subject.database.rowCounts !== 'object' || subject.database.rowCounts === null)
        return {
            result: 'skipped',
            reason: 'the manifest records no row counts to compare with (a backup from an older version)',
            ...empty,
            seconds: elapsed(),
        };
    const dirs = searchDirs(engine, env, listDir);
    const found = findPrograms(engine.throwawayPrograms, dirs, executable);
    if ('missing' in found)
        return {
            result: 'skipped',
            reason: `no ${found.missing} on the runner`,
            ...empty,
            seconds: elapsed(),
        };
    const { programs } = found;
    const root = process.getuid?.() === 0;
    const versionOut = await runProcess([programs.server, '--version'], { signal });
    const serverVersion = stderrTail(versionOut.stdout, 1) || stderrTail(versionOut.stderr, 1);
    const tooOld = subject.database.dumpToolVersion !== undefined
        ? engine.throwawayVersionProblem?.(serverVersion, subject.database.dumpToolVersion)
        : undefined;
    if (tooOld)
        return { result: 'skipped', reason: tooOld, ...empty, seconds: elapsed() };
    const dir = privateDir();
    const setup = engine.throwawaySetup({
        programs,
        serverVersion,
        dir,
        database: subject.database,
        root,
    });
    const record = (result, reason, counts = empty) => ({
        result,
        reason,
        ...counts,
        seconds: elapsed(),
        server: setup.server,
    });
    if (setup.missing) {
        (0,external_node_fs_namespaceObject.rmSync)(dir, { recursive: true, force: true });
        return { ...record('skipped', `no ${setup.missing} on the runner`), server: setup.server };
    }
    let server;
    try {
        let prefix = [];
        if (root && engine.type === 'pgsql') {
            // initdb and postgres refuse root: the private directory is the service account's.
            const account = await serviceAccount();
            (0,external_node_fs_namespaceObject.chownSync)(dir, account.uid, account.gid);
            prefix = [
                'setpriv',
                `--reuid=${account.uid}`,
                `--regid=${account.gid}`,
                '--clear-groups',
                '--',
            ];
        }
        try {
            server = await startServer(setup, dir, prefix, signal);
        }
        catch (error) {
            // A server stopped by the interruption fails its start-up: that is the interruption.
            if (signal.aborted)
                throw new InterruptedError();
            if (error instanceof CannotStart)
                return record('skipped', `could not start ${setup.server}: ${error.message}`);
            throw error;
        }
        options.log?.(`Throwaway ${setup.server} started; loading the dump.`);
        const host = runnerWithPath([...new Set(Object.values(programs).map((p) => (0,external_node_path_namespaceObject.dirname)(p)))]);
        const me = (0,external_node_os_namespaceObject.userInfo)().username;
        const context = { connection: setup.connection, tool: setup.tool, account: me, owner: me };
        const problems = [];
        let counts = empty;
        try {
            await loadDump({
                host,
                engine,
                context: { ...context, client: setup.client },
                dump: subject.dump,
                ...(setup.dropLines ? { dropLines: setup.dropLines } : {}),
                signal,
                progress: new StepProgress('Restore test load', {
                    intervalSeconds: 3600,
                    now: () => performance.now(),
                    emit: () => { },
                }),
                root: [],
            });
            const counted = await countRows(host, engine, context, signal);
            const differences = rowCountDifferences(subject.database.rowCounts, counted);
            if (differences.length > 0)
                problems.push(`the restored database differs: ${differences.join('; ')}`);
            const users = homeStorageUsers(parseHexLines(await homeStorages(host, engine, context)));
            counts = {
                tables: Object.keys(counted).length,
                rows: Object.values(counted).reduce((sum, n) => sum + n, 0),
                users: users.length,
            };
            const facts = options.facts ?? (await listArchive(subject.filesArchive, signal));
            problems.push(...archiveProblems(facts, users));
        }
        catch (error) {
            if (signal.aborted || error instanceof InterruptedError)
                throw new InterruptedError();
            problems.push(describeError(error));
        }
        // A verdict reached while being stopped says nothing about the backup.
        if (signal.aborted)
            throw new InterruptedError();
        if (problems.length > 0)
            return record('failed', problems.join('; '), counts);
        return record('passed', `the dump loads into ${setup.server} with the ${counts.tables} tables and ${counts.rows} rows recorded; the files archive holds config.php, the data directory marker and the files/ of ${counts.users} ${counts.users === 1 ? 'user' : 'users'} with a home storage`, counts);
    }
    finally {
        await server?.stop();
        (0,external_node_fs_namespaceObject.rmSync)(dir, { recursive: true, force: true });
    }
}
/** The home storage query's output (hex ids), run on the throwaway database. */
async function homeStorages(host, engine, context) {
    const command = engine.homeStoragesCommand(context);
    const result = await host.run(guardedCommand(command.argv, command.delivery), {
        input: secretLine(command.secret),
        keepStdinOpen: true,
    });
    if (result.exitCode !== 0)
        throw new Error(`reading the home storages from the restored database failed: ${stderrTail(result.stderr, 2) || `exit ${result.exitCode}`}`);
    return result.stdout;
}
/** One line for the log and the summaries. */
function restoreTestLine(record) {
    if (record.result === 'skipped')
        return skippedLine(record.reason);
    return `restore test ${record.result} (${record.seconds.toFixed(1)} s${record.server ? `, ${record.server}` : ''}): ${record.reason}`;
}

;// CONCATENATED MODULE: ./src/backup.ts
// The orchestrator: a validated plan in, a finished, dated backup directory out.
//   backup-dir checked and locked (stale incomplete backups removed) → connect → discover
//   → instance locked → preflight → files (base archive, streamed from the host while the
//   instance is live) → [maintenance on → files (delta archive: what changed) ‖ dump ‖ row
//   counts ‖ encryption state and index → maintenance restored] → restore test → manifest
//   → rename into place → retention (the complete backups the policy does not keep are
//   removed, still under the backup-dir lock).
// A backup directory only gets its final name once everything in it is written and
// checked; on any failure the partial one is removed, and retention never runs.

























async function runBackup(plan, context) {
    const { reporter } = context;
    const startedAt = context.startedAt ?? new Date();
    const name = backupName(startedAt);
    const finalDir = (0,external_node_path_namespaceObject.join)(plan.backupDir, name);
    const workDir = `${finalDir}${INCOMPLETE_SUFFIX}`;
    checkBackupDir(plan.backupDir);
    const holder = holderName(process.pid, (0,external_node_os_namespaceObject.hostname)(), startedAt);
    // One run at a time writes into a backup directory; holding it, every incomplete backup
    // there is a killed run's leftover.
    const lockBackupDir = async () => {
        const lock = await acquireLock(new LocalHost(), plan.backupDir, holder, (heldBy) => `Another backup is running with backup-dir '${plan.backupDir}' (${heldBy}). Wait for it to finish, or choose another backup-dir.`);
        try {
            await removeStaleBackups(plan.backupDir, (path, bytes) => reporter.warning(`Removed an incomplete backup an interrupted run left behind: ${path} (${formatBytes(bytes)}).`));
        }
        catch (error) {
            await lock.release();
            throw error;
        }
        return lock;
    };
    // An existing backup dir is held at once (its leftovers would count against the free
    // space); a new one is created and held only once the preflight has accepted it.
    let dirLock = (0,external_node_fs_namespaceObject.existsSync)(plan.backupDir) ? await lockBackupDir() : undefined;
    // age's files for this run (recipients; the identity for the restore test), checked
    // before the host is touched.
    const ageFiles = plan.encryptTo ? new AgeFiles(context.ssh?.runtimeDir) : undefined;
    try {
        let age;
        if (ageFiles && plan.encryptTo) {
            const recipientsFile = ageFiles.recipientsFile(plan.encryptTo);
            await checkRecipients(recipientsFile, 'encrypt-to');
            age = {
                recipientsFile,
                ...(plan.identity ? { identityFile: ageFiles.identityFile(plan.identity) } : {}),
            };
            reporter.info(`Encrypting every archive and the dump (age) to ${plan.encryptTo.length} recipient${plan.encryptTo.length === 1 ? '' : 's'}: ${plan.encryptTo.map(describeRecipient).join(', ')}.`);
        }
        const result = await backUp(plan, context, {
            startedAt,
            name,
            finalDir,
            workDir,
            holder,
            holdBackupDir: async () => {
                if (dirLock)
                    return;
                createBackupDir(plan.backupDir);
                dirLock = await lockBackupDir();
            },
            ...(age ? { age } : {}),
        });
        // Only a finished backup, in its final name, lets older ones go; still under the lock.
        const retention = await applyRetention(plan, context, name);
        return { ...result, ...(retention ? { retention } : {}) };
    }
    finally {
        ageFiles?.dispose();
        await dirLock?.release();
    }
}
async function backUp(plan, context, run) {
    const { reporter, signal } = context;
    const { startedAt, name, finalDir, workDir, age } = run;
    // An encrypted backup's files are age files, named so.
    const named = (fileName) => (age ? `${fileName}${AGE_SUFFIX}` : fileName);
    const encryptTo = age ? { encryptTo: age.recipientsFile } : {};
    const interrupted = () => {
        if (signal.aborted)
            throw new InterruptedError();
    };
    let host;
    /** Set once this run created the work dir: only then is it this run's to remove. */
    let ownsWorkDir = false;
    let instanceLock;
    /** The host's private directory for tar's snapshot file, once made (with what removes it). */
    let snapshotDir;
    try {
        host = await connectStep(reporter, plan.target, context.secrets, context.ssh);
        const connected = host;
        interrupted();
        const instance = await reporter.group('Discover', async () => {
            const found = await discoverInstance(connected, plan, context.secrets);
            const db = found.database;
            reporter.info(`${found.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud'} ${found.version} (instance ${found.instanceId}) in ${found.installDir}`);
            reporter.info(`Data directory ${found.dataDir}; database ${db.type} '${db.name}'${db.type === 'sqlite' ? ` (${db.file})` : ` as '${db.user}'`}; occ runs as ${found.owner}.`);
            return found;
        });
        // One backup of an instance at a time, from whichever runner: the lock is on the
        // installation directory itself, on the host.
        instanceLock = await acquireLock(connected, instance.installDir, run.holder, (heldBy) => `Another backup of the instance in ${instance.installDir} on ${connected.label} is running (${heldBy}). Wait for it to finish.`, (argv) => asUser(connected.account, instance.owner, argv));
        interrupted();
        const engine = engineFor(instance.database.type);
        const checked = await reporter.group('Preflight', () => preflight(connected, plan, instance, engine, reporter));
        const { tool, fileSet } = checked;
        const progress = (label, expectedBytes) => new StepProgress(label, {
            intervalSeconds: context.progressSeconds ?? DEFAULT_PROGRESS_SECONDS,
            now: () => performance.now(),
            emit: (line) => reporter.info(line),
            ...(expectedBytes !== undefined ? { expectedBytes } : {}),
        });
        interrupted();
        // Only now, with the plan checked (backup-dir not inside what is copied), is anything
        // created: the backup dir if it is new (and locked), then this run's work dir.
        await run.holdBackupDir();
        if ((0,external_node_fs_namespaceObject.existsSync)(finalDir) || (0,external_node_fs_namespaceObject.existsSync)(workDir))
            throw new BackupError(`${finalDir} exists already: not overwriting a backup.`);
        // Recorded before it exists: a process that outlives this one removes it if we die.
        context.onWorkDir?.(workDir);
        (0,external_node_fs_namespaceObject.mkdirSync)(workDir, { mode: 0o700 });
        ownsWorkDir = true;
        const made = await createSnapshotDir(connected);
        snapshotDir = { path: made, remove: () => removeSnapshotDir(connected, made) };
        const snapshot = `${made}/snapshot`;
        const tally = new FileTally(fileSet.parts
            .filter((p) => p.part === 'absolute' &&
            fileSet.kinds?.[p.member.slice(LAYOUT.absolute.length)] !== 'dir')
            .map((p) => p.member));
        const facts = new ListingFacts();
        const base = await reporter.group('Files (read in place, before maintenance mode)', async () => {
            const reading = progress('Files', checked.sizeBytes);
            const config = { dir: false, file: false };
            const written = await streamFiles(connected, fileSet, {
                phase: 'base',
                snapshot,
                path: (0,external_node_path_namespaceObject.join)(workDir, named(filesArchiveName(startedAt, plan.compression))),
                compression: plan.compression,
                ...encryptTo,
                signal,
                progress: reading,
                onMember: (member) => {
                    tally.base(member);
                    facts.add(member.name);
                    if (member.name === `${LAYOUT.install}/config`)
                        config.dir = member.type === 'directory';
                    if (member.name === `${LAYOUT.install}/config/config.php`)
                        config.file = member.type === 'file' && member.size > 0;
                },
            });
            reading.finish();
            if (!config.dir || !config.file)
                throw new BackupError(`config.php did not arrive in the backup (${LAYOUT.install}/config/config.php is missing, empty or a symlink after the copy): without it the backup cannot be restored. Check the exclude patterns.`);
            reporter.info(`${written.files} files, ${formatBytes(written.bytes)} read; ${written.path.split('/').pop()}: ${formatBytes(written.size)}, sha256 ${written.sha256}.`);
            if (written.changedWhileRead)
                reporter.info('Some files changed or vanished while being read (normal on a live server); the pass inside the maintenance window catches up.');
            return written;
        });
        interrupted();
        // Before the window: the delta pass's snapshot, prepared from the base pass's.
        const windowSnapshot = plan.maintenanceMode
            ? await deltaSnapshot(connected, snapshot)
            : undefined;
        const maintenance = plan.maintenanceMode
            ? new MaintenanceGuard(connected, { installDir: instance.installDir, user: instance.owner }, (m) => reporter.info(m), context.maintenanceRestoreSeconds, context.onMaintenance)
            : undefined;
        const dumpContext = {
            connection: instance.database,
            tool,
            account: connected.account,
            owner: instance.owner,
        };
        const { dumped: dump, delta, rowCounts, encryption, } = await reporter.group(maintenance
            ? 'Maintenance window (files delta, database dump, row counts, encryption index)'
            : 'Database dump, row counts and encryption index', () => maintenanceWindow(maintenance, context, {
            // Inside the window only what changed since the base pass is read (tar's level 1,
            // with every directory's entries, so deletions are recorded too); install files
            // (config.php among them) keep the state found before the window.
            delta: (stepSignal) => maintenance && windowSnapshot
                ? streamFiles(connected, fileSet, {
                    phase: 'delta',
                    snapshot: windowSnapshot,
                    path: (0,external_node_path_namespaceObject.join)(workDir, named(filesDeltaArchiveName(startedAt, plan.compression))),
                    compression: plan.compression,
                    ...encryptTo,
                    signal: stepSignal,
                    onMember: (member) => tally.delta(member),
                })
                : Promise.resolve(undefined),
            dump: async (stepSignal) => {
                const dumping = progress('Database dump');
                const dumped = await dumpDatabase({
                    host: connected,
                    engine,
                    connection: instance.database,
                    tool,
                    owner: instance.owner,
                    into: dumpFile((0,external_node_path_namespaceObject.join)(workDir, named(dumpFileName(startedAt, plan.compression))), plan.compression, age?.recipientsFile),
                    idleTimeoutSeconds: plan.dumpTimeoutSeconds,
                    signal: stepSignal,
                    progress: dumping,
                });
                dumping.finish();
                return dumped;
            },
            // Beside the dump, so that a restore can be checked table by table against the
            // state the dump holds.
            count: (stepSignal, dumping) => countRows(connected, engine, dumpContext, stepSignal, {
                seconds: plan.dumpTimeoutSeconds,
                after: dumping,
            }),
            // Beside the dump too: the encrypted files' cache entries as the dump holds them.
            encryption: (stepSignal, dumping) => recordEncryption(connected, engine, dumpContext, {
                indexPath: (0,external_node_path_namespaceObject.join)(workDir, named(encryptionIndexName(startedAt, plan.compression))),
                compression: plan.compression,
                ...encryptTo,
                signal: stepSignal,
                timeout: { seconds: plan.dumpTimeoutSeconds, after: dumping },
            }),
        }));
        const encryptionRecord = {
            ...encryption.state,
            ...(encryption.index
                ? {
                    index: {
                        name: encryption.index.file.path.split('/').pop(),
                        files: encryption.index.files,
                    },
                }
                : {}),
        };
        if (delta?.changedWhileRead)
            reporter.warning(`Files changed or vanished inside the maintenance window while they were read (the copies in the backup may be cut mid-write): ${delta.complaints.slice(-5).join(' ')}`);
        await snapshotDir.remove();
        snapshotDir = undefined;
        const stats = tally.total(delta !== undefined);
        interrupted();
        const files = base;
        // Outside the maintenance window: the window does not grow by the test's time.
        const readable = (path) => ({
            path,
            compression: plan.compression,
            ...(age ? { age: { identityFile: age.identityFile } } : {}),
        });
        const restoreTest = !plan.restoreTest
            ? undefined
            : age && !age.identityFile
                ? untestedEncrypted(reporter)
                : await reporter.group('Restore test (throwaway database on the runner)', () => testRestore(engine, context, {
                    dump: readable(dump.path),
                    filesArchive: readable(files.path),
                    database: { ...instance.database, rowCounts, dumpToolVersion: tool.version },
                }, facts));
        interrupted();
        const manifest = buildManifest({
            name,
            startedAt,
            finishedAt: new Date(),
            source: plan.target.kind === 'ssh' ? connected.label : `${(0,external_node_os_namespaceObject.hostname)()} (local)`,
            transport: plan.target.kind,
            instance,
            tool,
            fileSet,
            stats,
            maintenance: maintenance
                ? { managed: true, window: maintenance.window, seconds: maintenance.seconds() }
                : {
                    managed: false,
                    window: { switchedByUs: false, priorState: instance.maintenance },
                    seconds: 0,
                },
            archives: [
                { file: files, role: 'files', compression: plan.compression },
                ...(delta
                    ? [
                        {
                            file: delta,
                            role: 'files-delta',
                            compression: plan.compression,
                        },
                    ]
                    : []),
                { file: dump, role: 'database', compression: plan.compression },
                ...(encryption.index
                    ? [
                        {
                            file: encryption.index.file,
                            role: 'encryption-index',
                            compression: plan.compression,
                        },
                    ]
                    : []),
            ],
            encryption: encryptionRecord,
            ...(plan.encryptTo ? { encryptedTo: recipientRecords(plan.encryptTo) } : {}),
            dumpBytes: dump.rawBytes,
            rowCounts,
            rowCountsInWindow: maintenance !== undefined,
            // tar on the host records every file's owner as it finds it, whoever reads it.
            ownersKept: true,
            restoreHint: engine.restoreHint,
            ...(restoreTest ? { restoreTest } : {}),
        });
        const { archives } = manifest;
        writeSmallFile((0,external_node_path_namespaceObject.join)(workDir, CHECKSUMS_NAME), checksumsText(archives));
        writeSmallFile((0,external_node_path_namespaceObject.join)(workDir, MANIFEST_NAME), `${JSON.stringify(manifest, null, 2)}\n`);
        // Only a complete backup gets its final name.
        (0,external_node_fs_namespaceObject.renameSync)(workDir, finalDir);
        return {
            directory: finalDir,
            manifest,
            manifestPath: (0,external_node_path_namespaceObject.join)(finalDir, MANIFEST_NAME),
            dumpPath: (0,external_node_path_namespaceObject.join)(finalDir, dump.path.split('/').pop()),
            filesArchivePath: (0,external_node_path_namespaceObject.join)(finalDir, files.path.split('/').pop()),
            ...(delta ? { filesDeltaPath: (0,external_node_path_namespaceObject.join)(finalDir, delta.path.split('/').pop()) } : {}),
            ...(encryption.index
                ? { encryptionIndexPath: (0,external_node_path_namespaceObject.join)(finalDir, encryptionRecord.index.name) }
                : {}),
            sizeBytes: files.size + (delta?.size ?? 0) + dump.size + (encryption.index?.file.size ?? 0),
        };
    }
    catch (error) {
        if (ownsWorkDir)
            await removeTree(workDir, { prefix: [], keepsOwners: false }).catch((cleanup) => reporter.warning(`Could not remove the incomplete backup: ${describeError(cleanup)}`));
        if (signal.aborted && error instanceof MaintenanceNotRestoredError)
            throw new InterruptedError(`The backup was interrupted. ${describeError(error)}`);
        if (signal.aborted)
            throw new InterruptedError();
        throw error;
    }
    finally {
        await snapshotDir?.remove().catch(() => { });
        await instanceLock?.release();
        await host?.close();
    }
}
/** The restore test of an encrypted backup when the run holds no identity: not run, said why. */
function untestedEncrypted(reporter) {
    const record = {
        result: 'skipped',
        reason: "the backup is encrypted and this run has no identity to decrypt it (give 'identity' to test it here, or run verify --restore-test with the identity where it is kept)",
        tables: 0,
        rows: 0,
        users: 0,
        seconds: 0,
    };
    reporter.info(restoreTestLine(record));
    return record;
}
/**
 * Removes the complete backups in backup-dir that the policy does not keep, reporting each
 * and a summary. A backup that cannot be removed is a warning: this run's backup is fine.
 */
async function applyRetention(plan, context, justWritten) {
    const { reporter, signal } = context;
    if (isRetentionOff(plan.retention))
        return undefined;
    const policy = `${describePolicy(plan.retention)}; UTC`;
    if (signal.aborted) {
        reporter.warning(`Retention (${policy}) skipped: the run was interrupted. Nothing removed.`);
        return undefined;
    }
    return reporter.group(`Retention (${policy})`, async () => {
        let outcome;
        try {
            outcome = await pruneBackups(plan.backupDir, plan.retention, justWritten, {
                signal,
                onRemoved: (path, reasons) => reporter.info(`Removed ${path}: not kept (${reasons.join('; ')}).`),
                onFailed: (path, remains, error) => reporter.warning(`Could not remove ${path}, which the retention policy does not keep: ${error.replace(/\.$/, '')}. What remains: ${remains}; remove it by hand.`),
            });
        }
        catch (error) {
            reporter.warning(`Retention stopped: ${describeError(error).replace(/\.$/, '')}. The backup itself is complete.`);
            return undefined;
        }
        reporter.info(`Retention: kept ${outcome.kept.length}, removed ${outcome.removed.length}${outcome.failed.length ? `; ${outcome.failed.length} not kept could not be removed` : ''}.`);
        return outcome;
    });
}
/**
 * Runs the restore test on the finished archives: a failure fails the backup (its
 * directory is removed as incomplete), a skip is a warning and recorded.
 */
async function testRestore(engine, context, subject, 
/** What the base pass's headers showed: the archive is not read again. */
facts) {
    const { reporter } = context;
    const record = await runRestoreTest(engine, subject, {
        signal: context.signal,
        facts,
        log: (line) => reporter.info(line),
    });
    const line = restoreTestLine(record);
    if (record.result === 'failed')
        throw new BackupError(`The ${line}`);
    if (record.result === 'skipped')
        reporter.warning(line);
    else
        reporter.info(line);
    return record;
}
function writeSmallFile(path, text) {
    try {
        (0,external_node_fs_namespaceObject.writeFileSync)(path, text, { mode: 0o600 });
    }
    catch (error) {
        throw isNoSpace(error) ? noSpaceError(path) : error;
    }
}
/**
 * The maintenance window: switch maintenance mode on (unless disabled), run the dump, the
 * files delta and the row counts side by side (the first failure stops the others), and
 * restore the prior state whatever happened, reporting both causes if both went wrong.
 */
async function maintenanceWindow(maintenance, context, work) {
    const { reporter } = context;
    return inMaintenanceWindow(maintenance, reporter, async () => {
        const [dumped, delta, rowCounts, encryption] = await allOrNothing(context.signal, (signal) => {
            const dumping = work.dump(signal);
            return [
                dumping,
                work.delta(signal),
                work.count(signal, dumping),
                work.encryption(signal, dumping),
            ];
        });
        if (delta)
            reporter.info(`Files delta: ${delta.files} files (${formatBytes(delta.bytes)}) changed since the base pass; ${delta.path.split('/').pop()}: ${formatBytes(delta.size)}.`);
        reporter.info(`Database dump: ${formatBytes(dumped.rawBytes)} raw, ${formatBytes(dumped.size)} compressed.`);
        const tables = Object.keys(rowCounts).length;
        reporter.info(`Row counts: ${tables} table${tables === 1 ? '' : 's'}, ${Object.values(rowCounts).reduce((sum, n) => sum + n, 0)} rows.`);
        reporter.info(`Server-side encryption: ${describeEncryption({
            ...encryption.state,
            ...(encryption.index ? { index: { name: '', files: encryption.index.files } } : {}),
        })}.`);
        return { dumped, delta, rowCounts, encryption };
    });
}

;// CONCATENATED MODULE: ./src/host/guarded-restic.ts
// restic on the host, with its secrets (the repository string, which may carry a REST
// server's password, the repository password, the backends' keys) delivered on stdin: no
// argv on either side shows them, no file on disk holds them. The wrapper is a sibling of
// guarded.ts: it reads the secrets from the first lines of stdin, gives the password to
// restic as a file on fd 3 (a here-document: a pipe in dash), exports the repository and
// the backend variables into restic's environment only (the wrapper's own
// /proc/PID/environ is the one it started with), and then either keeps watching stdin and
// stops restic when it ends (the client went away), or hands the rest of stdin to restic
// as the data of `backup --stdin`.

// Every value is read with `read -r` into a variable and only ever expanded inside double
// quotes or a here-document, which expand it once and never again: any byte but newline
// and NUL arrives as it was. restic is stopped with SIGINT, on which it removes its lock.
const guarded_restic_SCRIPT = `
mode=$1; count=$2; shift 2
IFS= read -r RESTIC_REPOSITORY || exit 125
IFS= read -r secret || exit 125
export RESTIC_REPOSITORY
RESTIC_PASSWORD_FILE=/dev/fd/3; export RESTIC_PASSWORD_FILE
while [ "$count" -gt 0 ]; do
  IFS= read -r name || exit 125
  IFS= read -r value || exit 125
  case $name in
    ''|[!A-Z_]*|*[!A-Z0-9_]*) echo "owncloud-backup: invalid variable name" >&2; exit 125 ;;
  esac
  export "$name=$value"
  count=$((count - 1))
done
value=
if [ "$mode" = data ]; then
  exec "$@" 3<<OWNCLOUD_BACKUP_EOF
$secret
OWNCLOUD_BACKUP_EOF
fi
exec 4<&0
"$@" 4<&- </dev/null 3<<OWNCLOUD_BACKUP_EOF &
$secret
OWNCLOUD_BACKUP_EOF
child=$!
secret=
( while IFS= read -r _ <&4; do :; done; kill -INT "$child" 2>/dev/null ) >/dev/null 2>&1 </dev/null &
watchdog=$!
exec 4<&-
wait "$child"
status=$?
kill "$watchdog" 2>/dev/null
exit "$status"
`.trim();
/** Names of variables restic would take instead of (or besides) what the wrapper sets. */
const RESERVED = new Set([
    'RESTIC_REPOSITORY',
    'RESTIC_REPOSITORY_FILE',
    'RESTIC_PASSWORD',
    'RESTIC_PASSWORD_FILE',
    'RESTIC_PASSWORD_COMMAND',
    'IFS',
]);
const VARIABLE_NAME = /^[A-Z_][A-Z0-9_]*$/;
/** The argv that runs restic (`argv`, the program first) under the wrapper on the host. */
function guardedResticCommand(argv, stdin, secrets) {
    return [
        'sh',
        '-c',
        guarded_restic_SCRIPT,
        'owncloud-backup',
        stdin,
        String(Object.keys(secrets.env).length),
        ...argv,
    ];
}
function oneLine(value, what) {
    if (/[\r\n\0]/.test(value))
        throw new BackupError(`${what} contains a line break or NUL byte, which restic cannot take.`);
    return value;
}
/**
 * The first stdin lines the wrapper reads. Refuses, naming the value but never showing it,
 * what cannot travel as one line, and passwords restic itself would change: restic 0.14
 * strips the spaces at the start and end of a password file.
 */
function resticSecretLines(secrets) {
    const lines = [
        oneLine(secrets.repository, 'The restic repository'),
        oneLine(secrets.password, 'The restic password'),
    ];
    if (secrets.repository === '')
        throw new BackupError('The restic repository is empty.');
    if (secrets.password === '')
        throw new BackupError('The restic password is empty.');
    if (secrets.password.trim() !== secrets.password)
        throw new BackupError('The restic password starts or ends with white space, which restic strips from a password file: remove it (and change the repository key with restic key passwd if it was made with it).');
    for (const [name, value] of Object.entries(secrets.env)) {
        if (!VARIABLE_NAME.test(name))
            throw new BackupError(`The restic environment variable name '${name}' is not valid: use capital letters, digits and '_', not starting with a digit.`);
        if (RESERVED.has(name))
            throw new BackupError(`The restic environment variable ${name} cannot be set: the tool gives restic its repository and password itself.`);
        lines.push(name, oneLine(value, `The value of the restic environment variable ${name}`));
    }
    return `${lines.join('\n')}\n`;
}

;// CONCATENATED MODULE: ./src/destination/restic.ts





/**
 * restic stored the snapshot, but some source files could not be read (restic's exit 3):
 * the snapshot lacks them. The summary is that of the stored snapshot.
 */
class IncompleteSnapshotError extends BackupError {
    name = 'IncompleteSnapshotError';
    /** The summary of the stored snapshot. */
    summary;
    /** restic's own lines about the files it could not read. */
    resticLines;
    constructor(message, summary, resticLines) {
        super(message);
        this.summary = summary;
        this.resticLines = resticLines;
    }
}
const NOT_INSTALLED = (label) => `restic is not installed on ${label}: install it (Debian/Ubuntu: apt-get install restic).`;
/** The version in `restic version`'s output (`restic 0.14.0 compiled with go1.19.8 on …`). */
function parseResticVersion(output) {
    return /^restic (\d+\.\d+\.\d+)\S*(?: \([^)]*\))? compiled with/m.exec(output)?.[1];
}
/** Finds restic on the host (through the prefix, as it will run) and reads its version. */
async function findRestic(host, prefix) {
    const where = reached(host, await host.run([...prefix, 'sh', '-c', 'command -v restic']));
    const path = where.stdout.trim();
    if (where.exitCode !== 0 || !path.startsWith('/'))
        throw new BackupError(NOT_INSTALLED(host.label));
    const result = reached(host, await host.run([...prefix, path, 'version']));
    const version = parseResticVersion(result.stdout);
    if (result.exitCode !== 0 || !version)
        throw new BackupError(`restic at ${path} on ${host.label} did not tell its version (exit ${result.exitCode}): ${stderrTail(result.stderr) || stderrTail(result.stdout) || 'no output'}`);
    return { path, version };
}
/** The repository string without the credentials of a URL (`rest:https://user:***@host/`). */
function displayRepository(repository) {
    return repository.replace(/^([a-z0-9]+:[a-z][a-z0-9+.-]*:\/\/)([^/]*)@/i, (_, scheme, info) => {
        const user = String(info).split(':')[0];
        return `${scheme}${user}:***@`;
    });
}
/** The password in a repository URL's user info (`rest:https://user:PASSWORD@host/`), if any. */
function repositoryUrlPassword(repository) {
    const info = /^[a-z0-9]+:[a-z][a-z0-9+.-]*:\/\/([^/]*)@/i.exec(repository)?.[1];
    return info?.includes(':') ? info.slice(info.indexOf(':') + 1) : undefined;
}
/**
 * Removes every secret from restic's words: the repository string becomes its display
 * form, and the password, the URL's credentials and the variables' values become `***`.
 */
function redactResticOutput(text, access) {
    let out = text.replaceAll(access.repository, displayRepository(access.repository));
    const secrets = [access.password, ...Object.values(access.env)];
    const urlPassword = repositoryUrlPassword(access.repository);
    if (urlPassword) {
        secrets.push(urlPassword);
        try {
            secrets.push(decodeURIComponent(urlPassword));
        }
        catch {
            // not percent-encoded
        }
    }
    // Longest first, so that a secret holding another one is removed whole.
    for (const secret of secrets.filter((s) => s.length >= 3).sort((a, b) => b.length - a.length))
        out = out.replaceAll(secret, '***');
    return out;
}
/** restic's words, as quoted in a message: its last few meaningful lines. */
function resticSaid(stderr) {
    const lines = stderr
        .split('\n')
        .map((line) => line.trim())
        .filter((line) => line && !line.startsWith('{"message_type":"status"'));
    return lines.slice(-4).join(' / ');
}
/**
 * Whether restic's failure says that there is no repository at the location (and not that
 * it could not reach it): restic 0.14 says "unable to open config file" for both.
 */
function isMissingRepository(stderr) {
    if (!/unable to open config file/i.test(stderr))
        return false;
    // local and sftp: the file is missing; rest: `<config/> does not exist`; s3: NoSuchKey.
    return (/no such file or directory|file does not exist|<config\/> does not exist|NoSuchKey|key does not exist|\b404\b/i.test(stderr) && !/connection refused|no such host|i\/o timeout|Access Key Id/i.test(stderr));
}
/**
 * restic's stderr and exit code → one sentence: what failed, why, and what to do. `doing`
 * names the step (`Opening the restic repository`); the stderr must already be redacted.
 */
function explainResticFailure(stderr, exitCode, doing) {
    const said = resticSaid(stderr);
    const quote = said ? ` (restic: ${said})` : '';
    if (/wrong password or no key found/i.test(stderr))
        return `${doing} failed: the restic password is wrong for this repository (restic: wrong password or no key found). Check restic-password.`;
    const locked = /repository is already locked (?:exclusively )?by (PID \d+ on \S+)/i.exec(stderr);
    if (locked || /unable to create lock in backend/i.test(stderr)) {
        const created = /lock was created at ([^\n(]+?)\s*\(/.exec(stderr)?.[1];
        return `${doing} failed: another restic run holds a lock on the repository${locked ? ` (${locked[1]}${created ? `, since ${created}` : ''})` : ''}. Wait for it to finish; if no run is active, the lock is stale: remove it with restic unlock.`;
    }
    if (isMissingRepository(stderr))
        return `${doing} failed: there is no restic repository at that location. Set restic-init to true to create it, or check restic-repository.`;
    if (/unexpected HTTP response \((401|403)\)/i.test(stderr))
        return `${doing} failed: the REST server refused the credentials (HTTP ${/\((40[13])\)/.exec(stderr)[1]}). Check the user and password in restic-repository.`;
    if (/signature we calculated does not match|SignatureDoesNotMatch|Access Key Id you provided does not exist|InvalidAccessKeyId|Access Denied|AccessDenied/i.test(stderr))
        return `${doing} failed: the S3 server refused the credentials${quote}. Check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the restic environment.`;
    if (/x509:|certificate signed by unknown authority|tls: /i.test(stderr))
        return `${doing} failed: the repository server's TLS certificate is not trusted${quote}. Give its CA with SSL_CERT_FILE in the restic environment, or check the address.`;
    if (/unable to start the sftp session|ssh command exited|sftp:.*EOF/i.test(stderr))
        return `${doing} failed: restic could not start an SFTP session to the repository's server${quote}. Check that its SSH server is reachable and accepts the key, and the sftp.command option if one is given.`;
    if (/no such host|server misbehaving/i.test(stderr))
        return `${doing} failed: the repository's server name could not be resolved${quote}. Check the host in restic-repository.`;
    if (/connection refused|network is unreachable|no route to host|i\/o timeout|connection reset/i.test(stderr))
        return `${doing} failed: the repository's server could not be reached${quote}. Check that it runs and that the address in restic-repository is right.`;
    if (/snapshot is empty/i.test(stderr))
        return `${doing} failed: there was no data (restic 0.14 refuses to store an empty snapshot from stdin).`;
    return `${doing} failed (restic exit ${exitCode})${quote || ': no message'}.`;
}
/** The summary message of `restic backup --json` (its last line of that type). */
function parseBackupSummary(stdout) {
    let found;
    for (const line of stdout.split('\n')) {
        if (!line.startsWith('{'))
            continue;
        try {
            const message = JSON.parse(line);
            if (message.message_type === 'summary')
                found = message;
        }
        catch {
            // not one of restic's JSON lines
        }
    }
    if (!found?.snapshot_id)
        return undefined;
    return {
        id: found.snapshot_id,
        filesNew: found.files_new ?? 0,
        filesChanged: found.files_changed ?? 0,
        filesUnmodified: found.files_unmodified ?? 0,
        dataAdded: found.data_added ?? 0,
        totalBytesProcessed: found.total_bytes_processed ?? 0,
    };
}
/** restic's `error` messages of a backup (one per file it could not read), as `item: what`. */
function parseBackupErrors(output) {
    const errors = [];
    for (const line of output.split('\n')) {
        if (!line.startsWith('{')) {
            if (/^(error|warning): /i.test(line.trim()) && !/at least one source file/i.test(line))
                errors.push(line.trim());
            continue;
        }
        try {
            const message = JSON.parse(line);
            if (message.message_type !== 'error')
                continue;
            const op = typeof message.error === 'object' ? message.error.Op : undefined;
            errors.push(`${message.item ?? '?'}: ${op ? `${op} failed` : 'failed'} during ${message.during ?? 'backup'}`);
        }
        catch {
            // not JSON after all
        }
    }
    return errors;
}
function toSnapshot(raw) {
    return {
        id: raw.id,
        time: raw.time,
        host: raw.hostname,
        tags: raw.tags ?? [],
        paths: raw.paths ?? [],
        ...(raw.parent ? { parent: raw.parent } : {}),
    };
}
/** `restic snapshots --json`. */
function parseSnapshots(stdout) {
    return JSON.parse(stdout.trim() || '[]').map(toSnapshot);
}
/** `restic forget --json`: the groups, each with the snapshots kept and removed. */
function parseForget(stdout) {
    // With --prune, prune's text follows the JSON on stdout.
    const line = stdout.split('\n').find((l) => l.startsWith('['));
    const groups = JSON.parse(line ?? '[]');
    return {
        kept: groups.flatMap((g) => (g.keep ?? []).map((s) => s.id)),
        removed: groups.flatMap((g) => (g.remove ?? []).map((s) => s.id)),
    };
}
/** forget's `--keep-*` options for a policy (its rules that are on). */
function keepOptions(policy) {
    const rules = [
        ['last', '--keep-last'],
        ['daily', '--keep-daily'],
        ['weekly', '--keep-weekly'],
        ['monthly', '--keep-monthly'],
        ['yearly', '--keep-yearly'],
    ];
    return rules.flatMap(([field, option]) => policy[field] > 0 ? [option, String(policy[field])] : []);
}
/** `--time`'s form (restic reads it in its local time zone, UTC here). */
function resticTime(time) {
    return time.toISOString().slice(0, 19).replace('T', ' ');
}
function tagOptions(tags) {
    for (const tag of tags)
        if (tag === '' || tag.includes(','))
            throw new BackupError(`The restic tag '${tag}' is empty or holds a comma, which restic splits on.`);
    return tags.flatMap((tag) => ['--tag', tag]);
}
/** `--tag a,b`: the snapshots that carry all of these tags. */
function tagFilter(tags) {
    if (!tags || tags.length === 0)
        return [];
    tagOptions(tags);
    return ['--tag', tags.join(',')];
}
class ResticRepository {
    secretLines;
    host;
    access;
    program;
    prefix;
    constructor(host, access, program, 
    /** argv prefix that lets restic read every file, e.g. ['sudo', '-n'], or []. */
    prefix) {
        this.host = host;
        this.access = access;
        this.program = program;
        this.prefix = prefix;
        for (const option of access.options)
            if (!/^[^=\s]+=/.test(option) || /[\r\n\0]/.test(option))
                throw new BackupError(`The restic option '${option}' is not of the form key=value (e.g. sftp.connections=2).`);
        this.secretLines = resticSecretLines({
            repository: access.repository,
            password: access.password,
            env: { TZ: 'UTC', ...access.env },
        });
    }
    /** restic's version on the host. */
    get version() {
        return this.program.version;
    }
    /** The repository as messages may name it (without credentials). */
    get label() {
        return displayRepository(this.access.repository);
    }
    argv(args, stdin) {
        const restic = [
            this.program.path,
            ...this.access.options.flatMap((option) => ['-o', option]),
            ...args,
        ];
        return [
            ...this.prefix,
            ...guardedResticCommand(restic, stdin, {
                ...this.access,
                env: { TZ: 'UTC', ...this.access.env },
            }),
        ];
    }
    redact(text) {
        return redactResticOutput(text, this.access);
    }
    failure(result, doing) {
        const said = this.redact(result.stderr || result.stdout);
        return new BackupError(explainResticFailure(said, result.exitCode, `${doing} (${this.label} on ${this.host.label})`));
    }
    /** Runs a restic command to its end; stdin stays open and is watched by the wrapper. */
    async execute(args, doing, signal) {
        const result = reached(this.host, await this.host.run(this.argv(args, 'watch'), {
            input: this.secretLines,
            keepStdinOpen: true,
            ...(signal ? { signal } : {}),
        }));
        if (result.exitCode !== 0)
            throw this.failure(result, doing);
        return result;
    }
    /**
     * Opens the repository (`restic cat config`); when there is none: `restic init` if
     * `init`, else a BackupError saying so that names the input restic-init.
     */
    async open(init, o = {}) {
        const doing = 'Opening the restic repository';
        const result = reached(this.host, await this.host.run(this.argv(['cat', 'config'], 'watch'), {
            input: this.secretLines,
            keepStdinOpen: true,
            ...(o.signal ? { signal: o.signal } : {}),
        }));
        if (result.exitCode === 0)
            return 'opened';
        if (!isMissingRepository(result.stderr))
            throw this.failure(result, doing);
        if (!init)
            throw new BackupError(`There is no restic repository at ${this.label} (seen from ${this.host.label}). Set restic-init to true to create it there, or check restic-repository.`);
        await this.execute(['init'], 'Creating the restic repository', o.signal);
        return 'created';
    }
    /** `restic backup` of paths on the host; exit 3 (files not read) is IncompleteSnapshotError. */
    async backupPaths(o) {
        if (o.paths.length === 0)
            throw new BackupError('Nothing to back up: no paths were given.');
        const args = [
            ...['backup', '--json', '--quiet', '--host', o.hostname, ...tagOptions(o.tags)],
            ...o.excludes.flatMap((exclude) => ['--exclude', exclude]),
            ...(o.parent ? ['--parent', o.parent] : []),
            ...(o.time ? ['--time', resticTime(o.time)] : []),
            ...(o.oneFileSystem ? ['--one-file-system'] : []),
            '--',
            ...o.paths,
        ];
        const doing = 'Backing up files into the restic repository';
        const result = reached(this.host, await this.host.run(this.argv(args, 'watch'), {
            input: this.secretLines,
            keepStdinOpen: true,
            ...(o.signal ? { signal: o.signal } : {}),
        }));
        return this.summaryOf(result, doing);
    }
    summaryOf(result, doing) {
        const summary = parseBackupSummary(result.stdout);
        if (result.exitCode === 3 && summary) {
            const lines = parseBackupErrors(this.redact(`${result.stdout}\n${result.stderr}`));
            throw new IncompleteSnapshotError(`restic stored snapshot ${summary.id} in ${this.label}, but some source files could not be read, so it lacks them (restic exit 3): ${lines.slice(0, 5).join('; ') || 'restic named none'}${lines.length > 5 ? `; and ${lines.length - 5} more` : ''}. Check the permissions of those files (or give the tool a way to read them, e.g. sudo).`, summary, lines);
        }
        if (result.exitCode !== 0)
            throw this.failure(result, doing);
        if (!summary)
            throw new BackupError(`${doing} (${this.label}): restic ended well but reported no summary: ${stderrTail(this.redact(result.stdout)) || 'no output'}`);
        return summary;
    }
    /**
     * `restic backup --stdin --stdin-filename NAME`: the caller writes the data to `stdin`
     * and ends it; `done` gives the summary. The end of stdin is the end of the data: a
     * caller whose data source failed must forget the snapshot (or abort through `signal`
     * before ending stdin, which stops restic without a snapshot).
     */
    backupStdin(o) {
        if (o.filename === '' || o.filename.includes('/') || /[\r\n\0]/.test(o.filename))
            throw new BackupError(`The file name '${o.filename}' for a restic stdin backup is not valid.`);
        const args = [
            ...['backup', '--json', '--quiet', '--host', o.hostname, ...tagOptions(o.tags)],
            ...['--stdin', '--stdin-filename', o.filename],
            ...(o.time ? ['--time', resticTime(o.time)] : []),
        ];
        const started = this.host.stream(this.argv(args, 'data'), {
            input: this.secretLines,
            feedStdin: true,
            ...(o.signal ? { signal: o.signal } : {}),
        });
        const stdout = collect(started.stdout);
        const done = Promise.all([started.done, stdout]).then(([result, out]) => {
            const finished = reached(this.host, { ...result, stdout: out });
            return this.summaryOf(finished, `Backing up ${o.filename} into the restic repository`);
        });
        return { stdin: started.stdin, done };
    }
    /** `restic snapshots --json`, of this host name and with all of these tags when given. */
    async snapshots(o = {}) {
        const args = [
            'snapshots',
            '--json',
            ...tagFilter(o.tags),
            ...(o.hostname ? ['--host', o.hostname] : []),
        ];
        const result = await this.execute(args, 'Listing the snapshots of the restic repository');
        return parseSnapshots(result.stdout);
    }
    /** `restic forget ID… [--prune]`. */
    async forget(ids, o = {}) {
        if (ids.length === 0)
            return;
        await this.execute(['forget', ...(o.prune ? ['--prune'] : []), '--', ...ids], `Forgetting ${ids.length} snapshot(s) in the restic repository`);
    }
    /**
     * `restic forget --tag … --host … --keep-… [--prune] --json`: applies the policy to the
     * snapshots of this host with all of these tags, each distinct set of tags one history
     * (`--group-by host,tags`). A policy with every rule off removes nothing and runs nothing.
     */
    async forgetByPolicy(o) {
        if (isRetentionOff(o.policy)) {
            const all = await this.snapshots({ tags: o.tags, hostname: o.hostname });
            return { kept: all.map((s) => s.id), removed: [] };
        }
        const args = [
            ...['forget', '--json', ...tagFilter(o.tags), '--host', o.hostname],
            ...['--group-by', 'host,tags', ...keepOptions(o.policy)],
            ...(o.prune ? ['--prune'] : []),
        ];
        const result = await this.execute(args, 'Removing old snapshots from the restic repository');
        return parseForget(result.stdout);
    }
    /** `restic check`, reading this share of the data too when given (0 < percent ≤ 100). */
    async check(mode = {}) {
        const percent = mode.readDataSubsetPercent;
        if (percent !== undefined && !(percent > 0 && percent <= 100))
            throw new BackupError(`The share of data to read in restic check must be in (0, 100], not ${percent}.`);
        await this.execute(['check', ...(percent !== undefined ? ['--read-data-subset', `${percent}%`] : [])], `Checking the restic repository${percent !== undefined ? ` (reading ${percent}% of the data)` : ''}`);
    }
    /** `restic dump SNAPSHOT PATH`: the file's bytes on stdout, streamed. */
    dump(snapshot, path, o = {}) {
        const started = this.host.stream(this.argv(['dump', '--', snapshot, path], 'watch'), {
            input: this.secretLines,
            keepStdinOpen: true,
            ...(o.signal ? { signal: o.signal } : {}),
        });
        const done = started.done.then((result) => {
            reached(this.host, result);
            if (result.exitCode !== 0)
                throw this.failure(result, `Reading ${path} of snapshot ${snapshot} from the restic repository`);
        });
        return { stdout: started.stdout, done, kill: () => started.kill() };
    }
    /**
     * `restic restore SNAPSHOT --target DIR [--include …] [--verify]` on the host; with
     * verify, restic reads every restored file back and compares it with the repository.
     */
    async restore(snapshot, target, o = {}) {
        await this.execute([
            ...['restore', '--target', target],
            ...(o.include ?? []).flatMap((include) => ['--include', include]),
            ...(o.verify ? ['--verify'] : []),
            '--',
            snapshot,
        ], `Restoring snapshot ${snapshot} from the restic repository into ${target}`, o.signal);
    }
}
/** All of a stream's bytes, as text (restic's JSON output: small). */
function collect(stream) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        stream.on('data', (chunk) => chunks.push(chunk));
        stream.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
        stream.once('error', reject);
    });
}

;// CONCATENATED MODULE: ./src/steps/restic-files.ts
// What restic reads on the host for a repository backup: the same file set as the tar
// passes (steps/files.ts), as restic's paths and exclude patterns. restic stores each path
// where it really is on the host (a symlinked top-level path is read where it points, as
// tar reads it); the manifest records which part each path is.



/** `path` with every character restic's patterns give a meaning to escaped. Pure. */
function escapeResticPattern(path) {
    return path.replace(/[\\*?[]/g, '\\$&');
}
/**
 * The file set as restic's paths and excludes, in the two parts the backup takes apart:
 * `install` (config/, the theme, apps: read once, before the maintenance window, so that
 * config.php is kept as it was before maintenance mode went on) and `live` (the data
 * directory and the absolute paths: read while the instance is live, then again inside the
 * window). The user's patterns keep their meaning (see tarExcludeOptions): one with a
 * leading '/' is anchored at the root of each part it falls in, any other matches at any
 * depth (`*` within a name, `**` across names); the paths never read (the live SQLite
 * files) are left out literally. Pure.
 */
function resticSelection(fileSet) {
    // The same refusals as the tar passes (a pattern that would leave out a part whole).
    tarExcludeOptions(fileSet.exclude, fileSet.parts);
    const excludes = fileSet.skip.map((path) => `/${escapeResticPattern(fromRoot(path))}`);
    for (const raw of fileSet.exclude) {
        const pattern = raw.replace(/\/+$/, '');
        if (pattern === '')
            continue;
        if (!pattern.startsWith('/')) {
            excludes.push(pattern);
            continue;
        }
        for (const { part, within } of anchoredIn(pattern, fileSet.parts)) {
            const source = `/${escapeResticPattern(fromRoot(part.source))}`;
            excludes.push(within === '' ? source : `${source}/${within}`);
        }
    }
    const installParts = fileSet.parts.filter((p) => p.part === 'install');
    const liveParts = fileSet.parts.filter((p) => p.part !== 'install');
    const install = outermostSources(installParts);
    const live = outermostSources(liveParts);
    if (install.length === 0 || live.length === 0)
        throw new BackupError('Nothing to back up: the file set has no installation or data part.');
    // A data directory inside the installation (a tarball install) is the live part's.
    const inside = live
        .filter((l) => install.some((i) => isWithin(l, i)))
        .map((l) => `/${escapeResticPattern(fromRoot(l))}`);
    const unique = (list) => [...new Set(list)];
    return {
        install: { paths: install, excludes: unique([...excludes, ...inside]) },
        live: { paths: live, excludes: unique(excludes) },
    };
}

;// CONCATENATED MODULE: ./src/backup-restic.ts
// The orchestrator of a backup into a restic repository, restic running on the ownCloud
// host (host mode: no file content crosses the runner):
//   connect → discover → instance locked → preflight → restic found, repository opened →
//   leftovers of killed runs forgotten → files snapshot while the instance is live →
//   [maintenance on → files snapshot with the live one as parent (restic re-reads only what
//   changed) ‖ dump into the repository (--stdin) ‖ row counts ‖ encryption state and index
//   → maintenance restored] → encryption index → manifest snapshot (the backup is complete
//   once it exists) → live snapshot forgotten → retention → check.
// Every snapshot of one backup carries the tags owncloud-backup, instance=ID and
// backup=NAME, and part=files|database|encryption-index|manifest; the manifest snapshot
// also version=, db= and bytes=, so that `list` needs one `restic snapshots`. On any
// failure every snapshot of the backup is forgotten again, and retention never runs.























/** The tag every snapshot of this tool carries. */
const RESTIC_TAG = 'owncloud-backup';
/** The name the manifest has in its snapshot. */
const RESTIC_MANIFEST_NAME = 'manifest.json';
/** The format of the manifest snapshot's manifest.json. */
const RESTIC_MANIFEST_FORMAT = 'owncloud-backup-restic/2';
/** The restic host name of an instance's snapshots: its instance id (stable across moves). */
function resticHostname(instanceId) {
    return instanceId === '' ? 'owncloud' : instanceId;
}
/** The tags of one part of one backup. Pure. */
function partTags(instanceId, name, part) {
    return [RESTIC_TAG, `instance=${resticHostname(instanceId)}`, `backup=${name}`, `part=${part}`];
}
/** The value of `key=` among a snapshot's tags. Pure. */
function tagValue(snapshot, key) {
    const tag = (snapshot.tags ?? []).find((t) => t.startsWith(`${key}=`));
    return tag?.slice(key.length + 1);
}
function listedBackups(snapshots) {
    return snapshots
        .filter((s) => tagValue(s, 'part') === 'manifest' && (s.tags ?? []).includes(RESTIC_TAG))
        .map((s) => ({
        name: tagValue(s, 'backup') ?? '',
        snapshot: s.id,
        time: s.time,
        instance: tagValue(s, 'instance') ?? '',
        version: tagValue(s, 'version') ?? '',
        db: tagValue(s, 'db') ?? '',
        bytes: Number(tagValue(s, 'bytes') ?? 0),
    }))
        .sort((a, b) => b.time.localeCompare(a.time));
}
/** The backup names whose snapshots have no manifest: leftovers of runs that did not finish. Pure. */
function incompleteBackups(snapshots) {
    const byName = new Map();
    for (const s of snapshots) {
        const name = tagValue(s, 'backup');
        if (!name || !(s.tags ?? []).includes(RESTIC_TAG))
            continue;
        const entry = byName.get(name) ?? { ids: [], complete: false };
        entry.ids.push(s.id);
        if (tagValue(s, 'part') === 'manifest')
            entry.complete = true;
        byName.set(name, entry);
    }
    const out = new Map();
    for (const [name, entry] of byName)
        if (!entry.complete)
            out.set(name, entry.ids);
    return out;
}
/** Every secret of a restic plan: the password, the backend values, a URL's password. */
function resticSecretValues(restic) {
    const urlPassword = repositoryUrlPassword(restic.repository);
    return [restic.password, ...Object.values(restic.env), ...(urlPassword ? [urlPassword] : [])];
}
function repositoryOf(host, plan, prefix) {
    return async () => {
        const program = await findRestic(host, prefix);
        return new ResticRepository(host, {
            repository: plan.repository,
            password: plan.password,
            env: plan.env,
            options: plan.options,
        }, program, prefix);
    };
}
async function runResticBackup(plan, context) {
    const restic = plan.restic;
    if (!restic)
        throw new Error('runResticBackup needs a restic plan');
    const { reporter, signal } = context;
    const startedAt = context.startedAt ?? new Date();
    const name = backupName(startedAt);
    const interrupted = () => {
        if (signal.aborted)
            throw new InterruptedError();
    };
    let host;
    let instanceLock;
    let repository;
    /** Once a snapshot of this backup may exist: on failure, every one of them is forgotten. */
    let started = false;
    let instance;
    let complete = false;
    const scratch = (0,external_node_fs_namespaceObject.mkdtempSync)((0,external_node_path_namespaceObject.join)((0,external_node_os_namespaceObject.tmpdir)(), 'owncloud-backup-restic-'));
    try {
        host = await connectStep(reporter, plan.target, context.secrets, context.ssh);
        const connected = host;
        interrupted();
        const found = await reporter.group('Discover', async () => {
            const discovered = await discoverInstance(connected, plan, context.secrets);
            reporter.info(`${discovered.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud'} ${discovered.version} (instance ${discovered.instanceId}) in ${discovered.installDir}`);
            return discovered;
        });
        instance = found;
        instanceLock = await acquireLock(connected, found.installDir, holderName(process.pid, (0,external_node_os_namespaceObject.hostname)(), startedAt), (heldBy) => `Another backup of the instance in ${found.installDir} on ${connected.label} is running (${heldBy}). Wait for it to finish.`, (argv) => asUser(connected.account, found.owner, argv));
        interrupted();
        const engine = engineFor(found.database.type);
        const checked = await reporter.group('Preflight', () => preflight(connected, plan, found, engine, reporter, { runnerFiles: false }));
        const { tool, fileSet } = checked;
        const selection = resticSelection(fileSet);
        const repo = await reporter.group('Restic repository', async () => {
            const opened = await repositoryOf(connected, restic, fileSet.readAs)();
            const how = await opened.open(restic.init, { signal });
            reporter.info(`${how === 'created' ? 'Created' : 'Opened'} the restic repository ${opened.label} from ${connected.label}.`);
            // Under the instance lock, a backup of this instance without its manifest is a
            // killed run's leftover.
            const leftovers = incompleteBackups(await opened.snapshots({
                tags: [RESTIC_TAG, `instance=${resticHostname(found.instanceId)}`],
            }));
            for (const [leftover, ids] of leftovers) {
                await opened.forget(ids);
                reporter.warning(`Forgot the ${ids.length} snapshot${ids.length === 1 ? '' : 's'} of ${leftover}, a backup an interrupted run left incomplete.`);
            }
            return opened;
        });
        repository = repo;
        if (restic.restoreTestAsked)
            reporter.warning(`The restore test is not run for a restic repository (not available yet); ${restic.check.kind === 'none' ? 'set the input check (metadata or read-data-subset=N%) to have restic check the repository after the backup' : 'restic checks the repository after the backup (check)'}.`);
        interrupted();
        const hostnameTag = resticHostname(found.instanceId);
        const tags = (part) => partTags(found.instanceId, name, part);
        const filesBackup = (part, stepSignal, parent) => repo.backupPaths({
            ...(part === 'install' ? selection.install : selection.live),
            tags: tags(part),
            hostname: hostnameTag,
            time: startedAt,
            signal: stepSignal,
            ...(parent ? { parent } : {}),
            oneFileSystem: true,
        });
        started = true;
        const { install, live } = await reporter.group('Files (restic, while the instance is live)', async () => {
            // The installation's part (config.php among it) is kept as it is before the window.
            const installed = await filesBackup('install', signal);
            reporter.info(`Installation: ${installed.filesNew + installed.filesChanged + installed.filesUnmodified} files, ${formatBytes(installed.totalBytesProcessed)} (snapshot ${installed.id}).`);
            try {
                const summary = await filesBackup('files-live', signal);
                reporter.info(`Data: ${summary.filesNew + summary.filesChanged + summary.filesUnmodified} files, ${formatBytes(summary.totalBytesProcessed)} read; ${formatBytes(summary.dataAdded)} new in the repository (snapshot ${summary.id}).`);
                return { install: installed, live: summary };
            }
            catch (error) {
                // Files that vanish or change while read are normal on a live server: the pass
                // inside the maintenance window reads them again.
                if (!(error instanceof IncompleteSnapshotError))
                    throw error;
                reporter.info(`Some files could not be read while the instance was live (snapshot ${error.summary.id}); the pass inside the maintenance window reads them again.`);
                return { install: installed, live: error.summary };
            }
        });
        interrupted();
        const maintenance = plan.maintenanceMode
            ? new MaintenanceGuard(connected, { installDir: found.installDir, user: found.owner }, (m) => reporter.info(m), context.maintenanceRestoreSeconds, context.onMaintenance)
            : undefined;
        const dumpContext = {
            connection: found.database,
            tool,
            account: connected.account,
            owner: found.owner,
        };
        const dumpName = dumpFileName(startedAt, 'zstd').replace(/\.zst$/, '');
        const indexPath = (0,external_node_path_namespaceObject.join)(scratch, encryptionIndexName(startedAt, 'zstd'));
        const { files, dump, rowCounts, encryption } = await reporter.group(maintenance
            ? 'Maintenance window (files snapshot, database dump, row counts, encryption index)'
            : 'Files snapshot, database dump, row counts and encryption index', () => inMaintenanceWindow(maintenance, reporter, async () => {
            const [filesDone, dumped, counted, encryptionDone] = await allOrNothing(signal, (stepSignal) => {
                const dumping = dumpDatabase({
                    host: connected,
                    engine,
                    connection: found.database,
                    tool,
                    owner: found.owner,
                    into: resticDumpSink(repo, {
                        filename: dumpName,
                        tags: tags('database'),
                        hostname: hostnameTag,
                        time: startedAt,
                        signal: stepSignal,
                    }),
                    idleTimeoutSeconds: plan.dumpTimeoutSeconds,
                    signal: stepSignal,
                });
                return [
                    filesBackup('files', stepSignal, live.id),
                    dumping,
                    countRows(connected, engine, dumpContext, stepSignal, {
                        seconds: plan.dumpTimeoutSeconds,
                        after: dumping,
                    }),
                    recordEncryption(connected, engine, dumpContext, {
                        indexPath,
                        compression: 'zstd',
                        signal: stepSignal,
                        timeout: { seconds: plan.dumpTimeoutSeconds, after: dumping },
                    }),
                ];
            });
            reporter.info(`Files: ${filesDone.filesNew} new, ${filesDone.filesChanged} changed, ${filesDone.filesUnmodified} unchanged since the live pass; snapshot ${filesDone.id}.`);
            reporter.info(`Database dump: ${formatBytes(dumped.rawBytes)} into ${dumpName} (snapshot ${dumped.id}).`);
            const tables = Object.keys(counted).length;
            reporter.info(`Row counts: ${tables} table${tables === 1 ? '' : 's'}, ${Object.values(counted).reduce((sum, n) => sum + n, 0)} rows.`);
            return { files: filesDone, dump: dumped, rowCounts: counted, encryption: encryptionDone };
        }));
        interrupted();
        let index;
        if (encryption.index) {
            const stored = repo.backupStdin({
                filename: encryptionIndexName(startedAt, 'zstd'),
                tags: tags('encryption-index'),
                hostname: hostnameTag,
                time: startedAt,
                signal,
            });
            (0,external_node_fs_namespaceObject.createReadStream)(indexPath).pipe(stored.stdin);
            index = await stored.done;
        }
        interrupted();
        const records = instanceRecords({
            source: plan.target.kind === 'ssh' ? connected.label : `${(0,external_node_os_namespaceObject.hostname)()} (local)`,
            transport: plan.target.kind,
            instance: found,
            tool,
            fileSet,
            maintenance: {
                managed: maintenance !== undefined,
                window: maintenance?.window ?? { switchedByUs: false, priorState: found.maintenance },
                seconds: maintenance?.seconds() ?? 0,
            },
            dumpBytes: dump.rawBytes,
            rowCounts,
            rowCountsInWindow: maintenance !== undefined,
        });
        const count = (s) => s.filesNew + s.filesChanged + s.filesUnmodified;
        const manifest = {
            format: RESTIC_MANIFEST_FORMAT,
            tool: { name: TOOL.name, version: TOOL.version },
            name,
            startedAt: startedAt.toISOString(),
            finishedAt: new Date().toISOString(),
            source: records.source,
            repository: { display: repo.label, resticVersion: repo.version },
            instance: records.instance,
            snapshots: {
                install: install.id,
                files: files.id,
                database: dump.id,
                ...(index ? { encryptionIndex: index.id } : {}),
            },
            files: {
                ...records.files,
                parts: fileSet.parts.map((p) => ({ source: p.source, member: p.member, part: p.part })),
                excludes: { install: selection.install.excludes, files: selection.live.excludes },
                leftOut: fileSet.dataExclude,
                filesNew: files.filesNew,
                filesChanged: files.filesChanged,
                filesUnmodified: files.filesUnmodified,
                fileCount: count(install) + count(files),
                bytes: install.totalBytesProcessed + files.totalBytesProcessed,
            },
            database: { ...records.database, dumpFile: dumpName },
            encryption: {
                ...encryption.state,
                ...(encryption.index
                    ? {
                        index: {
                            file: encryptionIndexName(startedAt, 'zstd'),
                            files: encryption.index.files,
                        },
                    }
                    : {}),
            },
            maintenance: records.maintenance,
            dataAdded: install.dataAdded +
                live.dataAdded +
                files.dataAdded +
                dump.dataAdded +
                (index?.dataAdded ?? 0),
        };
        const stored = repo.backupStdin({
            filename: RESTIC_MANIFEST_NAME,
            tags: [
                ...tags('manifest'),
                `version=${found.version}`,
                `db=${found.database.type}`,
                `bytes=${install.totalBytesProcessed + files.totalBytesProcessed + dump.rawBytes}`,
            ],
            hostname: hostnameTag,
            time: startedAt,
            signal,
        });
        external_node_stream_namespaceObject.Readable.from([`${JSON.stringify(manifest, null, 2)}\n`]).pipe(stored.stdin);
        const manifestSnapshot = await stored.done;
        complete = true;
        reporter.info(`Backup ${name} complete: manifest snapshot ${manifestSnapshot.id}.`);
        // The live pass was only the parent of the window's snapshot.
        await repo
            .forget([live.id])
            .catch((error) => reporter.warning(`Could not forget the live pass's snapshot ${live.id} (the backup is complete): ${describeError(error)}`));
        const retention = await applyResticRetention(plan, context, repo, found.instanceId, name);
        let checkedRepository;
        if (restic.check.kind !== 'none') {
            const what = restic.check.kind === 'metadata'
                ? 'restic check (metadata)'
                : `restic check --read-data-subset ${restic.check.percent}%`;
            await reporter.group(what, async () => {
                await repo.check(restic.check.kind === 'read-data-subset'
                    ? { readDataSubsetPercent: restic.check.percent }
                    : {});
                reporter.info(`${what}: no errors were found.`);
            });
            checkedRepository = what;
        }
        return {
            name,
            manifest,
            snapshot: manifestSnapshot.id,
            ...(retention ? { retention } : {}),
            ...(checkedRepository ? { checked: checkedRepository } : {}),
        };
    }
    catch (error) {
        if (started && !complete && repository && instance) {
            const repo = repository;
            const ours = await repo
                .snapshots({ tags: [RESTIC_TAG, `backup=${name}`] })
                .catch(() => undefined);
            if (ours === undefined)
                reporter.warning(`Could not list this run's snapshots to forget them: the next backup of the instance forgets them.`);
            else if (ours.length > 0)
                await repo
                    .forget(ours.map((s) => s.id))
                    .then(() => reporter.info(`Forgot the ${ours.length} snapshot${ours.length === 1 ? '' : 's'} of this incomplete backup.`))
                    .catch(() => reporter.warning('Could not forget the snapshots of this incomplete backup: the next backup of the instance forgets them.'));
        }
        if (signal.aborted && error instanceof MaintenanceNotRestoredError)
            throw new InterruptedError(`The backup was interrupted. ${describeError(error)}`);
        if (signal.aborted)
            throw new InterruptedError();
        throw error;
    }
    finally {
        (0,external_node_fs_namespaceObject.rmSync)(scratch, { recursive: true, force: true });
        await instanceLock?.release();
        await host?.close();
    }
}
/** The dump into the repository as a file of its own (`restic backup --stdin`). */
function resticDumpSink(repo, o) {
    let done;
    return {
        store(source) {
            const stored = repo.backupStdin(o);
            done = stored.done;
            source.pipe(stored.stdin);
            source.once('error', (error) => stored.stdin.destroy(error));
            return stored.done;
        },
        // The whole backup's snapshots are forgotten on failure; this one is among them.
        discard: async () => {
            await done?.catch(() => { });
        },
    };
}
/**
 * The retention policy over this instance's complete backups (their manifest snapshots):
 * every snapshot of a backup no rule keeps is forgotten, then the repository is pruned.
 * The backup just written is always kept. Failing here is a warning: the backup is complete.
 */
async function applyResticRetention(plan, context, repo, instanceId, justWritten) {
    const { reporter, signal } = context;
    if (isRetentionOff(plan.retention))
        return undefined;
    const policy = `${describePolicy(plan.retention)}; UTC`;
    if (signal.aborted) {
        reporter.warning(`Retention (${policy}) skipped: the run was interrupted. Nothing removed.`);
        return undefined;
    }
    return reporter.group(`Retention (${policy})`, async () => {
        try {
            const all = await repo.snapshots({
                tags: [RESTIC_TAG, `instance=${resticHostname(instanceId)}`],
            });
            const backups = listedBackups(all).map((b) => ({
                name: b.name,
                time: new Date(b.time),
            }));
            const decision = selectKept(backups, plan.retention, justWritten);
            const removed = new Set(decision.remove.map((b) => b.name));
            const ids = all.filter((s) => removed.has(tagValue(s, 'backup') ?? '')).map((s) => s.id);
            for (const backup of decision.remove)
                reporter.info(`Forgetting ${backup.name}: not kept (${(decision.reasons.get(backup.name) ?? []).join('; ')}).`);
            if (ids.length > 0)
                await repo.forget(ids, { prune: true });
            reporter.info(`Retention: kept ${decision.keep.length}, removed ${decision.remove.length}.`);
            return {
                kept: decision.keep.map((b) => b.name),
                removed: decision.remove.map((b) => b.name),
            };
        }
        catch (error) {
            reporter.warning(`Retention stopped: ${describeError(error).replace(/\.$/, '')}. The backup itself is complete.`);
            return undefined;
        }
    });
}
/** The complete backups of the repository, as `list` shows them. */
async function listResticBackups(plan, context) {
    const restic = plan.restic;
    if (!restic)
        throw new Error('listResticBackups needs a restic plan');
    const host = await connectStep(context.reporter, plan.target, context.secrets, context.ssh);
    try {
        const repo = await repositoryOf(host, restic, [])();
        await repo.open(false);
        return listedBackups(await repo.snapshots({ tags: [RESTIC_TAG] }));
    }
    finally {
        await host.close();
    }
}
/** A path of the files snapshot: where a member of the instance's layout was on the host. */
function memberSource(manifest, member) {
    const parts = [...manifest.files.parts].sort((a, b) => b.member.length - a.member.length);
    for (const part of parts)
        if (member === part.member || member.startsWith(`${part.member}/`))
            return `${part.source}${member.slice(part.member.length)}`;
    return undefined;
}

;// CONCATENATED MODULE: ./src/steps/archive-listing.ts
// What a files archive holds under some paths, read here from tar's verbose listing: names,
// types, sizes, mtimes and hard link targets. One pass over the archive, line by line, only
// the wanted entries kept. The listing is asked for in C quoting (every byte that is not
// printable ASCII as an escape) and UTC, so any name and any runner's locale parse the same.






/** Undoes tar's C quoting: `\\`, `\"`, `\n`, `\t` and friends, and `\ooo` octal bytes. Pure. */
function unquoteC(text) {
    const bytes = [];
    const simple = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11 };
    for (let i = 0; i < text.length; i++) {
        const c = text[i];
        if (c !== '\\') {
            bytes.push(...Buffer.from(c, 'utf8'));
            continue;
        }
        const next = text[i + 1] ?? '';
        if (/[0-7]/.test(next)) {
            const octal = /^[0-7]{1,3}/.exec(text.slice(i + 1))[0];
            bytes.push(parseInt(octal, 8));
            i += octal.length;
        }
        else {
            bytes.push(simple[next] ?? next.charCodeAt(0));
            i += 1;
        }
    }
    return Buffer.from(bytes).toString('utf8');
}
const QUOTED = String.raw `"((?:[^"\\]|\\.)*)"`;
const LINE = new RegExp(String.raw `^(.)(\S{9})\S*\s+(\d+)/(\d+)\s+(\d+|\d+,\s*\d+)\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.\d+)?\s+${QUOTED}(?: (->|link to) ${QUOTED})?$`);
/** One line of `tar --list --verbose --full-time --numeric-owner --quoting-style=c`. Pure. */
function parseListingLine(line) {
    const m = LINE.exec(line);
    if (!m)
        return undefined;
    const [, kind, mode, uid, gid, size, mtime, name, link, target] = m;
    const type = kind === '-'
        ? 'file'
        : kind === 'd'
            ? 'directory'
            : kind === 'l'
                ? 'symlink'
                : kind === 'h'
                    ? 'hardlink'
                    : 'other';
    return {
        name: unquoteC(name).replace(/\/+$/, ''),
        type,
        size: type === 'file' ? Number(size) : 0,
        mtime: mtime,
        mode: mode,
        uid: Number(uid),
        gid: Number(gid),
        ...(link && target !== undefined ? { linkTarget: unquoteC(target) } : {}),
    };
}
/** True when `name` is `path` or lies below it. Pure. */
function isAtOrBelow(name, path) {
    return name === path || name.startsWith(`${path}/`);
}
/**
 * The entries of an archive for which `wanted` is true, in archive order. A listing line
 * that cannot be parsed, or a tar that fails, fails the listing: a partial answer would
 * look like a backup without those files.
 */
async function archive_listing_listArchive(archive, wanted, signal) {
    const archivePath = archive.path;
    const tar = tarOnArchive(archive, ['--list', '--verbose', '--full-time', '--numeric-owner', '--quoting-style=c', '--file=-'], { env: { TZ: 'UTC', LC_ALL: 'C' }, ...(signal ? { signal } : {}) });
    const entries = [];
    let unparsed;
    for await (const line of (0,external_node_readline_namespaceObject.createInterface)({ input: tar.stdout, crlfDelay: Infinity })) {
        if (line === '')
            continue;
        const entry = parseListingLine(line);
        if (!entry) {
            unparsed ??= line;
            continue;
        }
        if (wanted(entry.name))
            entries.push(entry);
    }
    const listed = await tar.done;
    if (!listed.ok)
        throw new BackupError(`Listing ${archivePath} failed: ${listed.problem}`);
    if (unparsed !== undefined)
        throw new BackupError(`Listing ${archivePath}: a line of tar's listing could not be read: '${unparsed.slice(0, 200)}'`);
    return entries;
}
/**
 * The directories' entry lists (GNU.dumpdir) of an incremental archive, for the directories
 * for which `wanted` is true: directory member → the names it held when it was archived.
 */
async function readDumpdirs(archive, wanted, signal) {
    const lists = new Map();
    const decompress = openArchive(archive, signal);
    const scan = new TarScan((member) => {
        if (member.dumpdir && wanted(member.name))
            lists.set(member.name, new Set(member.dumpdir.map((e) => e.name)));
    });
    const [scanned, result] = await Promise.allSettled([
        (0,external_node_stream_promises_namespaceObject.pipeline)(decompress.stdout, scan, new external_node_stream_namespaceObject.Writable({ write: (_c, _e, done) => done() })),
        decompress.done,
    ]);
    const ended = result.status === 'fulfilled' ? result.value : undefined;
    if (!ended?.ok)
        throw new BackupError(`Reading ${archive.path} failed: ${ended?.problem ?? 'no message'}`);
    if (scanned.status === 'rejected')
        throw new BackupError(`Reading ${archive.path} failed: ${describe(scanned.reason)}`);
    return lists;
}
function describe(reason) {
    return reason instanceof Error ? reason.message : String(reason);
}
/**
 * The state a base archive and its delta hold together (pure): the base's entries, those
 * the delta archived again in their place, and without what the delta's entry lists say was
 * gone (with everything below it).
 */
function mergeListings(base, delta, dumpdirs) {
    const merged = new Map();
    for (const entry of base)
        merged.set(entry.name, entry);
    for (const entry of delta)
        merged.set(entry.name, entry);
    const gone = (name) => {
        // Gone when some listed directory above it no longer held the next name down.
        for (let slash = name.lastIndexOf('/'); slash > 0; slash = name.lastIndexOf('/', slash - 1)) {
            const listed = dumpdirs.get(name.slice(0, slash));
            if (!listed)
                continue;
            const child = name.slice(slash + 1).split('/')[0];
            if (!listed.has(child))
                return true;
        }
        return false;
    };
    return [...merged.values()].filter((entry) => !gone(entry.name));
}
/**
 * The entries of the files the backup holds (base and delta together) for which `wanted`
 * is true. The delta is small: it holds only what changed inside the maintenance window.
 */
async function listBackupFiles(archives, wanted, signal) {
    const { base, delta } = archives;
    const baseEntries = archive_listing_listArchive(base, wanted, signal);
    if (!delta)
        return baseEntries;
    const [listed, deltaEntries] = await Promise.all([
        baseEntries,
        archive_listing_listArchive(delta, wanted, signal),
    ]);
    // The lists of the directories above the wanted entries say whether each is still there.
    const above = new Set();
    for (const { name } of [...listed, ...deltaEntries])
        for (let slash = name.lastIndexOf('/'); slash > 0; slash = name.lastIndexOf('/', slash - 1))
            above.add(name.slice(0, slash));
    const dumpdirs = await readDumpdirs(delta, (d) => above.has(d), signal);
    return mergeListings(listed, deltaEntries, dumpdirs);
}

;// CONCATENATED MODULE: ./src/steps/tar-filter.ts
// A tar stream cut down to some members, here on the runner: records are passed through
// byte for byte (with the extended headers that belong to them: GNU long names, pax headers
// with ACLs and xattrs, sparse maps) or skipped, and the stream ends with tar's end-of-archive
// marker. A restore of single paths then sends the host only what it extracts, not the whole
// archive. Memory stays flat: data blocks stream; only headers are looked at.



const tar_filter_BLOCK = 512;
const tar_filter_padded = (size) => Math.ceil(size / tar_filter_BLOCK) * tar_filter_BLOCK;
/** Keeps the members at or below any of `members` (tar's own rule for member names). */
class TarFilter extends external_node_stream_namespaceObject.Transform {
    buffer = Buffer.alloc(0);
    /** Extended headers (and their data) waiting for the member they describe. */
    pending = [];
    longName;
    paxName;
    /** Bytes of the current record's data still to pass on (keep) or drop. */
    remaining = 0;
    keeping = false;
    /** Waiting for this many bytes of a meta record's data (read whole). */
    meta;
    ended = false;
    /** Members passed on. */
    kept = 0;
    members;
    constructor(members) {
        super();
        this.members = members;
    }
    wanted(name) {
        const clean = name.replace(/^\.\//, '').replace(/\/+$/, '');
        return this.members.some((m) => isAtOrBelow(clean, m));
    }
    _transform(chunk, _encoding, callback) {
        if (this.ended)
            return callback();
        this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
        try {
            this.drain();
            callback();
        }
        catch (error) {
            callback(error);
        }
    }
    drain() {
        for (;;) {
            if (this.ended)
                return;
            if (this.remaining > 0) {
                if (this.buffer.length === 0)
                    return;
                const take = Math.min(this.remaining, this.buffer.length);
                if (this.keeping)
                    this.push(this.buffer.subarray(0, take));
                this.buffer = this.buffer.subarray(take);
                this.remaining -= take;
                continue;
            }
            if (this.meta) {
                const need = tar_filter_padded(this.meta.size);
                if (this.buffer.length < need)
                    return;
                const data = this.buffer.subarray(0, need);
                this.pending.push(Buffer.from(data));
                if (this.meta.type === 'L')
                    this.longName = cString(data.subarray(0, this.meta.size));
                if (this.meta.type === 'x')
                    this.paxName = paxPath(data.subarray(0, this.meta.size));
                this.buffer = this.buffer.subarray(need);
                this.meta = undefined;
                continue;
            }
            if (this.buffer.length < tar_filter_BLOCK)
                return;
            const header = this.buffer.subarray(0, tar_filter_BLOCK);
            if (header.every((b) => b === 0)) {
                this.ended = true;
                this.push(Buffer.alloc(2 * tar_filter_BLOCK));
                return;
            }
            const type = String.fromCharCode(header[156]) || '0';
            const size = tarNumber(header.subarray(124, 136));
            // GNU sparse files carry their map in extension blocks after the header.
            let headerBlocks = 1;
            if (type === 'S' && header[482] === 1) {
                for (;;) {
                    if (this.buffer.length < (headerBlocks + 1) * tar_filter_BLOCK)
                        return;
                    const extension = this.buffer.subarray(headerBlocks * tar_filter_BLOCK, (headerBlocks + 1) * tar_filter_BLOCK);
                    headerBlocks++;
                    if (extension[504] !== 1)
                        break;
                }
            }
            const headerBytes = Buffer.from(this.buffer.subarray(0, headerBlocks * tar_filter_BLOCK));
            this.buffer = this.buffer.subarray(headerBlocks * tar_filter_BLOCK);
            if (type === 'x' || type === 'L' || type === 'K' || type === 'g') {
                this.pending.push(headerBytes);
                this.meta = { type, size };
                continue;
            }
            const magic = header.subarray(257, 263).toString('latin1');
            const prefix = magic.startsWith('ustar') && magic !== 'ustar ' ? cString(header.subarray(345, 500)) : '';
            const plain = cString(header.subarray(0, 100));
            const name = this.paxName ?? this.longName ?? (prefix ? `${prefix}/${plain}` : plain);
            this.keeping = this.wanted(name);
            if (this.keeping) {
                for (const part of this.pending)
                    this.push(part);
                this.push(headerBytes);
                this.kept++;
            }
            this.pending = [];
            this.longName = undefined;
            this.paxName = undefined;
            // Links and directories have no data, whatever their size field says.
            this.remaining = type === '1' || type === '2' || type === '5' ? 0 : tar_filter_padded(size);
        }
    }
    _flush(callback) {
        if (!this.ended)
            return callback(new Error('the archive ends without tar’s end-of-archive marker'));
        callback();
    }
}

;// CONCATENATED MODULE: ./src/steps/restore-files.ts
// Files back into place: the archive streams from here into tar on the host, which puts
// each member directory where the manifest (or the user) says, with owners, modes, ACLs,
// xattrs and hard links as archived. One pass over the archive, nothing unpacked here.












/**
 * A GNU tar --transform expression that maps member directory `member` (and everything
 * below it) to `target` (absolute), with the extended-regex flag and symlink targets left
 * alone. The replacement escapes what sed gives a meaning to. Pure.
 */
function memberTransform(member, target) {
    if (!/^[a-z]+$/.test(member))
        throw new Error(`unexpected archive member '${member}'`);
    if (/[\n\0]/.test(target))
        throw new BackupError(`The path '${target}' contains a line break.`);
    const relative = target.replace(/^\/+/, '');
    const replacement = (relative === '' ? '.' : relative).replace(/[\\&,]/g, '\\$&');
    // `member` itself becomes the target; `member/x` becomes `target/x`.
    return `s,^${member}(/|$),${replacement}\\1,xS`;
}
/** tar on the host that extracts the archive from stdin into place. Pure. */
function tarExtractCommand(layout, compression, incremental = false) {
    return [
        'tar',
        '--extract',
        '--file=-',
        compression === 'zstd' ? '--zstd' : '--gzip',
        '--directory=/',
        // A delta archive: its directories' entry lists remove what was deleted since the base.
        ...(incremental ? ['--listed-incremental=/dev/null'] : []),
        ...TAR_METADATA_FLAGS,
        '--same-permissions',
        '--same-owner',
        // A directory that stays (the installation of a package install, /, a mount point)
        // keeps its own owner and mode; only what was moved aside comes back as archived.
        '--no-overwrite-dir',
        ...Object.entries(layout).map(([member, target]) => `--transform=${memberTransform(member, target)}`),
    ];
}
/** Counts the bytes read from the archive, for progress. */
class Counter extends external_node_stream_namespaceObject.Transform {
    bytes = 0;
    progress;
    _transform(chunk, _encoding, callback) {
        this.bytes += chunk.length;
        this.progress?.update({ bytes: this.bytes });
        this.push(chunk);
        callback();
    }
}
async function extractFiles(options) {
    const { host } = options;
    const { archive } = options;
    const tar = tarExtractCommand(options.layout, archive.compression, options.incremental);
    const extracting = host.stream([...options.root, ...(options.pidFile ? recordingPid(options.pidFile, tar) : tar)], {
        feedStdin: true,
        signal: options.signal,
    });
    const counter = new Counter();
    counter.progress = options.progress;
    // tar's output is nothing but complaints: drain it so it never blocks.
    extracting.stdout.resume();
    // The compressed archive, decrypted here if it is encrypted: the host decompresses it.
    const source = openCompressed(archive, options.signal);
    const feeding = (0,external_node_stream_promises_namespaceObject.pipeline)(source.stdout, counter, extracting.stdin).catch((error) => error);
    const [result, read] = await Promise.all([extracting.done, source.done]);
    if (!read.ok && !host.transportFailure(result))
        throw new BackupError(`Reading ${archive.path} failed: ${read.problem}`);
    judgeExtraction(host, result, await feeding, archive.path, 'restoring the files');
}
/** Throws what went wrong with tar extracting on the host (the link, the disk, tar, the feed). */
function judgeExtraction(host, result, fed, archivePath, doing) {
    const Doing = doing[0].toUpperCase() + doing.slice(1);
    const transport = host.transportFailure(result);
    if (transport)
        throw new LinkError(`${Doing} failed: ${transport}`);
    if (result.exitCode !== 0) {
        const said = stderrTail(result.stderr);
        throw new BackupError(/No space left on device|Disk quota exceeded/.test(said)
            ? `No space left on device on ${host.label} while ${doing}: ${said}`
            : `${Doing} failed (tar exit ${result.exitCode} on ${host.label}): ${said || 'no message'}`);
    }
    if (fed instanceof Error)
        throw new BackupError(`Reading ${archivePath} failed: ${fed.message}`);
}
/**
 * Extracts only the given members (exact names; a directory brings what is below it) of the
 * archive's member directory `member` into `target` on the host. The archive is decompressed
 * and cut down to those members here (TarFilter), so the host receives only what it
 * extracts: one pass over the archive, streaming, with owners, modes, ACLs, xattrs and hard
 * links as archived.
 */
async function extractMembers(options) {
    const { host } = options;
    const tar = [
        'tar',
        '--extract',
        '--file=-',
        '--directory=/',
        ...TAR_METADATA_FLAGS,
        '--same-permissions',
        '--same-owner',
        `--transform=${memberTransform(options.member, options.target)}`,
        ...(options.incremental
            ? ['--listed-incremental=/dev/null']
            : ['--no-wildcards', '--', ...options.members]),
    ];
    const decompress = openArchive(options.archive, options.signal);
    const extracting = host.stream([...options.root, ...tar], {
        feedStdin: true,
        signal: options.signal,
    });
    extracting.stdout.resume();
    const filter = new TarFilter(options.members);
    const counter = new Counter();
    const feeding = (0,external_node_stream_promises_namespaceObject.pipeline)(decompress.stdout, filter, counter, extracting.stdin).catch((error) => error);
    const [result, unpacked] = await Promise.all([extracting.done, decompress.done]);
    const fed = await feeding;
    if (!unpacked.ok && !host.transportFailure(result))
        throw new BackupError(`Reading ${options.archive.path} failed: ${unpacked.problem}`);
    judgeExtraction(host, result, fed, options.archive.path, 'extracting the paths');
    return { sentBytes: counter.bytes };
}
/**
 * The backup's config files (config.php and *.config.php), read from the archive here
 * into memory through a private directory that is removed at once. They hold the database
 * password: never written anywhere else.
 */
async function readArchivedConfig(archive) {
    const dir = (0,external_node_fs_namespaceObject.mkdtempSync)((0,external_node_path_namespaceObject.join)((0,external_node_os_namespaceObject.tmpdir)(), 'owncloud-restore-config-'));
    try {
        const only = [
            `--directory=${dir}`,
            '--no-same-owner',
            '--no-same-permissions',
            '--wildcards',
            '--no-wildcards-match-slash',
            '--',
            `${LAYOUT.install}/config/*.php`,
        ];
        // tar reads to the end of the archive (a member may come again later): the file itself
        // when it is plain, the decrypted stream when it is encrypted.
        let extracted;
        if (archive.age) {
            const tar = tarOnArchive(archive, ['--extract', '--file=-', ...only]);
            tar.stdout.resume();
            extracted = await tar.done;
        }
        else {
            const result = await runProcess([
                'tar',
                '--extract',
                `--file=${archive.path}`,
                archive.compression === 'zstd' ? '--zstd' : '--gzip',
                ...only,
            ]);
            extracted = {
                ok: result.exitCode === 0,
                problem: stderrTail(result.stderr) || `tar exit ${result.exitCode}`,
                readFailed: false,
            };
        }
        if (extracted.readFailed)
            throw new BackupError(`Reading ${archive.path} failed: ${extracted.problem}`);
        if (!extracted.ok)
            throw new BackupError(`The backup's files archive holds no ${LAYOUT.install}/config/config.php (${extracted.problem}): it cannot be restored.`);
        const configDir = (0,external_node_path_namespaceObject.join)(dir, LAYOUT.install, 'config');
        const files = {};
        for (const name of (0,external_node_fs_namespaceObject.readdirSync)(configDir))
            if (name === 'config.php' || name.endsWith('.config.php'))
                files[name] = (0,external_node_fs_namespaceObject.readFileSync)((0,external_node_path_namespaceObject.join)(configDir, name), 'utf8');
        if (!files['config.php'])
            throw new BackupError("The backup's files archive holds no config/config.php: it cannot be restored.");
        return files;
    }
    finally {
        (0,external_node_fs_namespaceObject.rmSync)(dir, { recursive: true, force: true });
    }
}

;// CONCATENATED MODULE: ./src/verify.ts
// `owncloud-backup verify DIR`: proves a backup directory is whole, from its manifest alone:
// every archive has the recorded size and SHA-256, decompresses completely, the dump ends
// with its engine's completion line and has the recorded size, and the files archive
// lists the data directory with ownCloud's marker and ends with tar's end-of-archive
// marker and nothing but zero padding; the index of encrypted files (when there is one) holds
// the recorded number of entries, each a valid one. Reads each archive once, every byte of
// it, and nothing outside the backup directory.












/**
 * The backup directory cannot be checked at all (missing, unreadable, no manifest): the
 * check fails, as it does for a damaged backup.
 */
class UnverifiableError extends Error {
    name = 'UnverifiableError';
}
const TAR_BLOCK = 512;
function errnoCode(error) {
    return error.code ?? String(error);
}
/** An error opening a file, in words: 'permission denied (EACCES)'. */
function openFailure(error) {
    const code = errnoCode(error);
    return code === 'EACCES' || code === 'EPERM' ? `permission denied (${code})` : code;
}
function readManifestText(directory, doing = 'verify') {
    let stat;
    try {
        stat = (0,external_node_fs_namespaceObject.statSync)(directory);
    }
    catch (error) {
        throw new UnverifiableError(errnoCode(error) === 'ENOENT'
            ? `Cannot ${doing} ${directory}: no such directory.`
            : `Cannot ${doing} ${directory}: ${openFailure(error)}.`);
    }
    if (!stat.isDirectory())
        throw new UnverifiableError(`Cannot ${doing} ${directory}: it is not a directory.`);
    const path = (0,external_node_path_namespaceObject.join)(directory, MANIFEST_NAME);
    try {
        return (0,external_node_fs_namespaceObject.readFileSync)(path, 'utf8');
    }
    catch (error) {
        if (errnoCode(error) === 'ENOENT')
            throw new UnverifiableError(`${directory} has no ${MANIFEST_NAME}: it is not a finished backup.`);
        throw new UnverifiableError(`Cannot read ${path}: ${openFailure(error)}.`);
    }
}
/**
 * Why an archive name from a manifest must not be opened, or undefined for a plain file
 * name in the backup directory (no '/', not '.' or '..', no NUL, no control character).
 */
function archiveNameProblem(name) {
    const shown = JSON.stringify(name);
    if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0'))
        return `damaged: manifest names a file outside the backup: ${shown} (not read)`;
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x1f\x7f]/.test(name))
        return `damaged: manifest names a file with a control character in its name: ${shown} (not read)`;
    return undefined;
}
/** What in a parsed manifest.json makes it unusable for a check, or undefined. */
function manifestProblem(value) {
    if (typeof value !== 'object' || value === null)
        return 'it is not a JSON object';
    const manifest = value;
    if (!Array.isArray(manifest.archives))
        return "it has no 'archives' list";
    const database = manifest.database;
    if (typeof database !== 'object' || database === null)
        return "it has no 'database' record";
    if (!['mysql', 'pgsql', 'sqlite'].includes(String(database.type)))
        return `database.type ${JSON.stringify(database.type)} is not mysql, pgsql or sqlite`;
    if (!Number.isSafeInteger(database.dumpBytes) || database.dumpBytes < 0)
        return 'database.dumpBytes is not a byte count';
    // Printed in the report: no line breaks that could forge a line of it.
    // eslint-disable-next-line no-control-regex
    if (typeof database.dumpTool !== 'string' || /[\x00-\x1f\x7f]/.test(database.dumpTool))
        return 'database.dumpTool is not a program name';
    for (const [index, entry] of manifest.archives.entries()) {
        const archive = entry;
        const at = `archives[${index}]`;
        if (typeof archive !== 'object' || archive === null)
            return `${at} is not an object`;
        if (typeof archive.name !== 'string')
            return `${at}.name is not a string`;
        if (!['files', 'files-delta', 'database', 'encryption-index'].includes(String(archive.role)))
            return `${at}.role is not 'files', 'files-delta', 'database' or 'encryption-index'`;
        if (archive.compression !== 'zstd' && archive.compression !== 'gzip')
            return `${at}.compression is not 'zstd' or 'gzip'`;
        if (!Number.isSafeInteger(archive.size) || archive.size < 0)
            return `${at}.size is not a byte count`;
        if (typeof archive.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(archive.sha256))
            return `${at}.sha256 is not a SHA-256`;
        if (archive.encryption !== undefined && archive.encryption !== 'age')
            return `${at}.encryption is not 'age'`;
    }
    // Either every archive is encrypted, to the recipients recorded, or none is.
    const encrypted = manifest.archives.filter((a) => a.encryption === 'age').length;
    const age = manifest.age;
    if (age !== undefined && (!Array.isArray(age.recipients) || age.recipients.length === 0))
        return 'age.recipients is not a list of recipients';
    if (encrypted > 0 && encrypted < manifest.archives.length)
        return `${encrypted} of ${manifest.archives.length} archives are encrypted, not all`;
    if (encrypted > 0 !== (age !== undefined))
        return age
            ? 'age is recorded, but no archive is encrypted'
            : 'archives are encrypted, but age is not recorded';
    for (const role of ['files', 'database']) {
        const count = manifest.archives.filter((a) => a.role === role).length;
        if (count !== 1)
            return `it lists ${count} ${role} archives, not one`;
    }
    const deltas = manifest.archives.filter((a) => a.role === 'files-delta').length;
    if (deltas > 1)
        return `it lists ${deltas} files-delta archives, not one at most`;
    const indexes = manifest.archives.filter((a) => a.role === 'encryption-index').length;
    const index = manifest.encryption?.index;
    if (indexes > 1)
        return `it lists ${indexes} encryption-index archives, not one at most`;
    if (index !== undefined && (!Number.isSafeInteger(index.files) || index.files < 0))
        return 'encryption.index.files is not a count';
    if ((index !== undefined) !== (indexes === 1))
        return index
            ? 'encryption.index is recorded, but no encryption-index archive is listed'
            : 'an encryption-index archive is listed, but encryption.index is not recorded';
    return undefined;
}
/**
 * Passes data on to a command's stdin for as long as the command reads it, and lets the
 * caller observe every chunk, also those after the command stopped reading: tar stops at
 * its end-of-archive marker, and what follows must still be read and checked.
 */
class ForwardWhileRead extends external_node_stream_namespaceObject.Writable {
    reading = true;
    resume;
    target;
    observe;
    constructor(target, observe) {
        super();
        this.target = target;
        this.observe = observe;
        const stopped = () => {
            this.reading = false;
            this.resume?.();
        };
        target.once('error', stopped);
        target.once('close', stopped);
    }
    _write(chunk, _encoding, callback) {
        this.observe(chunk);
        if (!this.reading || this.target.write(chunk)) {
            callback();
            return;
        }
        const resume = () => {
            this.target.off('drain', resume);
            this.resume = undefined;
            callback();
        };
        this.resume = resume;
        this.target.once('drain', resume);
    }
    _final(callback) {
        if (this.reading)
            this.target.end();
        callback();
    }
}
/** Where the last non-zero byte of a stream is, seen chunk by chunk (-1: none yet). */
class ZeroTail {
    bytes = 0;
    lastNonZero = -1;
    zeros = Buffer.alloc(0);
    add(chunk) {
        if (this.zeros.length < chunk.length)
            this.zeros = Buffer.alloc(chunk.length);
        if (!chunk.equals(this.zeros.subarray(0, chunk.length))) {
            let index = chunk.length - 1;
            while (chunk[index] === 0)
                index--;
            this.lastNonZero = this.bytes + index;
        }
        this.bytes += chunk.length;
    }
}
/**
 * The block number at which tar found the end of the archive, from the last line of
 * `tar --list --block-number`: `block N: ** Block of NULs **` (the end-of-archive marker)
 * or `block N: ** End of File **` (the data ended without one).
 */
function tarEndBlock(lastLine) {
    const match = /^block (\d+): \*\* (?:Block of NULs|End of File) \*\*$/.exec(lastLine);
    return match ? Number(match[1]) : undefined;
}
/**
 * What is wrong with the end of a tar stream, or undefined: tar writes two zero blocks at
 * its end-of-archive marker, then zero padding to the end of its record, nothing else.
 */
function tarEndProblem(end) {
    if (end.endBlock === undefined)
        return 'tar did not report where the archive ends';
    const start = end.endBlock * TAR_BLOCK;
    if (end.lastNonZero >= start)
        return `${end.bytes - start} bytes after tar's end-of-archive marker (at byte ${start}) are not the zero padding tar writes`;
    if (end.bytes < start + 2 * TAR_BLOCK)
        return `it has no end-of-archive marker: the archive was cut short after ${end.bytes} bytes`;
    if (end.bytes % TAR_BLOCK !== 0)
        return `it ends in a partial ${TAR_BLOCK}-byte block (${end.bytes} bytes)`;
    return undefined;
}
/** Why the decompressor failed, in words: cut short, or damaged. */
function decompressionFailure(result, readError) {
    if (readError)
        return { cutShort: false, text: `the archive could not be read (${readError})` };
    if (result.status === 'rejected')
        return { cutShort: false, text: 'the decompressor could not be run' };
    const { exitCode, stderr } = result.value;
    const said = stderrTail(stderr, 1).replace(/\s+/g, ' ').trim();
    const cutShort = /premature end|unexpected end of file|truncated/i.test(stderr);
    return {
        cutShort,
        text: `the compressed data is ${cutShort ? 'cut short' : 'damaged'} (exit ${exitCode}${said ? `: ${said}` : ''})`,
    };
}
/**
 * Reads the whole archive, hashing every byte, through the decompressor to the end of its
 * output, which goes to `sink` (which must read to the end, too).
 */
async function readArchive(fd, archive, sink, identityFile) {
    const hash = (0,external_node_crypto_namespaceObject.createHash)('sha256');
    // An encrypted archive passes through age first (the decompressor reads age's output pipe
    // itself); the hash is the file's: the ciphertext.
    const decrypt = archive.encryption === 'age' && identityFile !== undefined
        ? streamProcess(decryptCommand(identityFile), { feedStdin: true })
        : undefined;
    const decompress = streamProcess(archive.compression === 'zstd' ? ['zstd', '-dc', '-q'] : ['gzip', '-dc'], decrypt ? { stdinFrom: decrypt.stdout } : { feedStdin: true });
    // Every byte is hashed, even after a damaged archive made the decompressor give up.
    const feed = new ForwardWhileRead((decrypt ?? decompress).stdin, (chunk) => hash.update(chunk));
    // A read that fails half-way (EIO) leaves the decompressor waiting for more: end it.
    const stopOnFailure = (error) => {
        decrypt?.kill();
        decompress.kill();
        throw error;
    };
    // age stops at the first damaged chunk: the decompressor then sees its input end.
    const [read, drained, result, decrypted] = await Promise.allSettled([
        (0,external_node_stream_promises_namespaceObject.pipeline)((0,external_node_fs_namespaceObject.createReadStream)('', { fd }), feed).catch(stopOnFailure),
        (0,external_node_stream_promises_namespaceObject.pipeline)(decompress.stdout, sink).catch(stopOnFailure),
        decompress.done,
        decrypt?.done,
    ]);
    const readError = read.status === 'rejected'
        ? errnoCode(read.reason)
        : drained.status === 'rejected'
            ? errnoCode(drained.reason)
            : undefined;
    const ageFailed = decrypt !== undefined &&
        (decrypted.status === 'rejected' || (decrypted.value?.exitCode ?? 0) !== 0);
    const ok = !readError && !ageFailed && result.status === 'fulfilled' && result.value.exitCode === 0;
    return {
        sha256: hash.digest('hex'),
        failure: ok
            ? undefined
            : !readError && ageFailed
                ? decryptionFailure(decrypted)
                : decompressionFailure(result, readError),
    };
}
/** Why age failed, in words: cut short, damaged, or the wrong identity. */
function decryptionFailure(result) {
    if (result.status === 'rejected' || !result.value)
        return { cutShort: false, text: 'age could not be run' };
    const text = explainAgeFailure(result.value.stderr, result.value.exitCode);
    return { cutShort: /cut short/.test(text), text: `decryption failed: ${text}` };
}
/** Hashes the whole file, for an encrypted archive whose content cannot be read here. */
async function hashOnly(fd) {
    const hash = (0,external_node_crypto_namespaceObject.createHash)('sha256');
    try {
        await (0,external_node_stream_promises_namespaceObject.pipeline)((0,external_node_fs_namespaceObject.createReadStream)('', { fd }), new external_node_stream_namespaceObject.Writable({
            write(chunk, _encoding, callback) {
                hash.update(chunk);
                callback();
            },
        }));
    }
    catch (error) {
        return {
            sha256: hash.digest('hex'),
            failure: { cutShort: false, text: `the archive could not be read (${errnoCode(error)})` },
        };
    }
    return { sha256: hash.digest('hex'), failure: undefined };
}
async function checkDump(fd, archive, manifest, identityFile) {
    let bytes = 0;
    let tail = Buffer.alloc(0);
    const sink = new external_node_stream_namespaceObject.Writable({
        write(chunk, _encoding, callback) {
            bytes += chunk.length;
            tail = Buffer.concat([tail, chunk]).subarray(-4096);
            callback();
        },
    });
    const read = await readArchive(fd, archive, sink, identityFile);
    const expected = manifest.database.dumpBytes;
    if (read.failure)
        return {
            read,
            checks: [
                {
                    ok: false,
                    what: `${archive.name}: the dump is ${read.failure.cutShort ? 'cut short' : 'damaged'}: decompression stopped after ${bytes} bytes of SQL (manifest: ${expected})`,
                },
            ],
        };
    const problem = engineFor(manifest.database.type).checkTail(tail.toString('utf8'));
    return {
        read,
        checks: [
            {
                ok: problem === undefined,
                what: `${archive.name}: ${problem ?? `ends with the ${manifest.database.dumpTool} completion line`}`,
            },
            {
                ok: bytes === expected,
                what: `${archive.name}: ${bytes} bytes of SQL (manifest: ${expected})`,
            },
        ],
    };
}
async function checkFiles(fd, archive, identityFile, facts) {
    const stream = new ZeroTail();
    const tar = streamProcess(['tar', '--list', '--block-number', '--file=-'], { feedStdin: true });
    const [read, listing, result] = await Promise.all([
        readArchive(fd, archive, new ForwardWhileRead(tar.stdin, (chunk) => stream.add(chunk)), identityFile),
        scanListing(tar.stdout, facts),
        tar.done,
    ]);
    const { entries, marker, lastLine } = listing;
    let listed;
    if (result.exitCode !== 0) {
        // tar's first complaint names the cause ('Unexpected EOF in archive'); the last is 'exiting now'.
        const said = (stderrTail(result.stderr, 1000).split('\n')[0] ?? '').replace(/\s+/g, ' ').trim();
        listed = {
            ok: false,
            what: `${archive.name}: tar stops after ${entries} entries (exit ${result.exitCode}${said ? `: ${said}` : ''})`,
        };
    }
    else {
        const problem = read.failure
            ? 'decompression failed, so its end is unproven'
            : tarEndProblem({
                endBlock: tarEndBlock(lastLine),
                bytes: stream.bytes,
                lastNonZero: stream.lastNonZero,
            });
        listed = {
            ok: problem === undefined,
            what: `${archive.name}: tar lists ${entries} entries${problem ? `, but ${problem}` : ', then its end-of-archive marker and zero padding'}`,
        };
    }
    return {
        read,
        checks: [
            listed,
            // The marker is in the base archive; the delta holds only what changed.
            ...(archive.role === 'files'
                ? [
                    {
                        ok: marker,
                        what: `${archive.name}: ${marker ? 'holds' : 'lacks'} the data directory's .ocdata/.ncdata marker`,
                    },
                ]
                : []),
        ],
    };
}
/** Why an index line is not an encrypted file's entry, or undefined. */
function indexLineProblem(line) {
    let entry;
    try {
        entry = JSON.parse(line);
    }
    catch {
        return 'it is not JSON';
    }
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry))
        return 'it is not a JSON object';
    const e = entry;
    for (const key of ['storage', 'path'])
        if (typeof e[key] !== 'string')
            return `its ${key} is not a string`;
    for (const key of ['fileid', 'encrypted'])
        if (!Number.isSafeInteger(e[key]))
            return `its ${key} is not a whole number`;
    for (const key of ['size', 'unencrypted_size'])
        if (e[key] !== null && !Number.isSafeInteger(e[key]))
            return `its ${key} is not a whole number or null`;
    if (e.encrypted === 0)
        return 'its encrypted is 0 (the index lists encrypted files only)';
    return undefined;
}
async function checkEncryptionIndex(fd, archive, manifest, identityFile) {
    let entries = 0;
    let problem;
    let partial = '';
    const decoder = new external_node_string_decoder_namespaceObject.StringDecoder('utf8');
    const take = (line) => {
        entries++;
        if (problem)
            return;
        const wrong = indexLineProblem(line);
        if (wrong)
            problem = `line ${entries} is not an encrypted file's entry: ${wrong}`;
    };
    const sink = new external_node_stream_namespaceObject.Writable({
        write(chunk, _encoding, callback) {
            const lines = (partial + decoder.write(chunk)).split('\n');
            partial = lines.pop() ?? '';
            lines.forEach(take);
            callback();
        },
        final(callback) {
            partial += decoder.end();
            if (partial !== '')
                take(partial);
            callback();
        },
    });
    const read = await readArchive(fd, archive, sink, identityFile);
    const expected = manifest.encryption?.index?.files;
    if (read.failure)
        return {
            read,
            checks: [
                {
                    ok: false,
                    what: `${archive.name}: the index is ${read.failure.cutShort ? 'cut short' : 'damaged'}: decompression stopped after ${entries} entries (manifest: ${expected})`,
                },
            ],
        };
    return {
        read,
        checks: [
            {
                ok: problem === undefined,
                what: `${archive.name}: ${problem ?? "every line is an encrypted file's file cache entry"}`,
            },
            {
                ok: entries === expected,
                what: `${archive.name}: ${entries} encrypted files (manifest: ${expected})`,
            },
        ],
    };
}
async function checkArchive(directory, archive, manifest, identityFile, facts) {
    const nameProblem = archiveNameProblem(archive.name);
    if (nameProblem)
        return [{ ok: false, what: nameProblem }];
    // No symlink is followed (O_NOFOLLOW), and opening a FIFO does not wait for a writer.
    let fd;
    try {
        fd = (0,external_node_fs_namespaceObject.openSync)((0,external_node_path_namespaceObject.join)(directory, archive.name), external_node_fs_namespaceObject.constants.O_RDONLY | external_node_fs_namespaceObject.constants.O_NOFOLLOW | external_node_fs_namespaceObject.constants.O_NONBLOCK);
    }
    catch (error) {
        const code = errnoCode(error);
        const what = code === 'ENOENT'
            ? `${archive.name} is missing`
            : code === 'ELOOP'
                ? `${archive.name} is a symbolic link (not read)`
                : `${archive.name} cannot be read: ${openFailure(error)}`;
        return [{ ok: false, what }];
    }
    const stat = (0,external_node_fs_namespaceObject.fstatSync)(fd);
    if (!stat.isFile()) {
        (0,external_node_fs_namespaceObject.closeSync)(fd);
        return [{ ok: false, what: `${archive.name} is not a regular file (not read)` }];
    }
    const checks = [
        {
            ok: stat.size === archive.size,
            what: `${archive.name}: size ${stat.size} (manifest: ${archive.size})`,
        },
    ];
    // Without the identity, an encrypted archive's bytes are checked, its content is not.
    if (archive.encryption === 'age' && identityFile === undefined) {
        const read = await hashOnly(fd);
        checks.push({
            ok: read.sha256 === archive.sha256 && read.failure === undefined,
            what: `${archive.name}: sha256 ${read.failure ? `unknown: ${read.failure.text}` : read.sha256 === archive.sha256 ? 'matches' : `is ${read.sha256}, manifest says ${archive.sha256}`}`,
        }, {
            ok: false,
            unchecked: true,
            what: `${archive.name}: content not checked: it is encrypted (age) and no identity was given`,
        });
        return checks;
    }
    // The read stream closes the file when it ends.
    const { read, checks: content } = archive.role === 'database'
        ? await checkDump(fd, archive, manifest, identityFile)
        : archive.role === 'encryption-index'
            ? await checkEncryptionIndex(fd, archive, manifest, identityFile)
            : await checkFiles(fd, archive, identityFile, archive.role === 'files' ? facts : undefined);
    checks.push({
        ok: read.sha256 === archive.sha256,
        what: `${archive.name}: sha256 ${read.sha256 === archive.sha256 ? 'matches' : `is ${read.sha256}, manifest says ${archive.sha256}`}`,
    }, {
        ok: read.failure === undefined,
        what: `${archive.name}: ${archive.encryption === 'age' ? 'decrypts and decompresses' : 'decompresses'} ${read.failure === undefined ? 'completely' : `with errors: ${read.failure.text}`}`,
    }, ...content);
    return checks;
}
/**
 * A backup's manifest, checked for its form but without reading the archives (for what a
 * backup holds): missing, not JSON, or malformed is an UnverifiableError naming the file.
 */
function readManifest(directory) {
    const path = (0,external_node_path_namespaceObject.join)(directory, MANIFEST_NAME);
    let parsed;
    try {
        parsed = JSON.parse(readManifestText(directory, 'read'));
    }
    catch (error) {
        if (error instanceof UnverifiableError)
            throw error;
        throw new UnverifiableError(`${path} is not valid JSON: the backup is damaged.`);
    }
    const problem = manifestProblem(parsed);
    if (problem)
        throw new UnverifiableError(`${path}: damaged: ${problem}`);
    return parsed;
}
/**
 * Checks a backup directory. Throws UnverifiableError when there is nothing to check (no
 * such directory, no manifest); a manifest that cannot be trusted is a failed check.
 * `facts`, when given, collects from the files archive's listing what the restore test
 * checks (the same single pass).
 */
async function verifyBackup(directory, facts, 
/** The age identity file for an encrypted backup (without it, only its bytes are checked). */
identityFile) {
    const text = readManifestText(directory);
    let parsed;
    try {
        parsed = JSON.parse(text);
    }
    catch {
        return [{ ok: false, what: `${MANIFEST_NAME}: damaged: it is not valid JSON` }];
    }
    if (parsed?.format !== MANIFEST_FORMAT)
        throw new UnverifiableError(`${(0,external_node_path_namespaceObject.join)(directory, MANIFEST_NAME)} is not an ${MANIFEST_FORMAT} manifest.`);
    const problem = manifestProblem(parsed);
    if (problem)
        return [{ ok: false, what: `${MANIFEST_NAME}: damaged: ${problem}` }];
    const manifest = parsed;
    const checks = [];
    for (const archive of manifest.archives)
        checks.push(...(await checkArchive(directory, archive, manifest, identityFile, facts)));
    return checks;
}
/**
 * Counts tar's `--block-number` listing line by line (never holding it whole), looks for
 * the marker, and keeps the last line (where tar says the archive ends).
 */
async function scanListing(stream, facts) {
    let entries = 0;
    let marker = false;
    let partial = '';
    let lastLine = '';
    const decoder = new external_node_string_decoder_namespaceObject.StringDecoder('utf8');
    const take = (line) => {
        lastLine = line;
        if (tarEndBlock(line) !== undefined)
            return;
        entries++;
        const name = line.replace(/^block \d+: /, '');
        if (name === 'data/.ocdata' || name === 'data/.ncdata')
            marker = true;
        facts?.add(name);
    };
    for await (const chunk of stream) {
        const lines = (partial + decoder.write(chunk)).split('\n');
        partial = lines.pop() ?? '';
        lines.forEach(take);
    }
    partial += decoder.end();
    if (partial !== '')
        take(partial);
    return { entries, marker, lastLine };
}
/**
 * `verify --restore-test`: the checks above, then, when they all pass, the restore test
 * on the backup, with what the one pass over the files archive collected.
 */
async function verifyAndTestRestore(directory, options) {
    const facts = new ListingFacts();
    const checks = await verifyBackup(directory, facts, options.identityFile);
    if (checks.some((c) => !c.ok))
        return { checks };
    const manifest = JSON.parse(readManifestText(directory));
    const dump = manifest.archives.find((a) => a.role === 'database');
    const files = manifest.archives.find((a) => a.role === 'files');
    const restoreTest = await runRestoreTest(engineFor(manifest.database.type), {
        dump: archiveFile(directory, dump, options.identityFile),
        filesArchive: archiveFile(directory, files, options.identityFile),
        database: manifest.database,
    }, { signal: options.signal, facts, ...(options.env ? { env: options.env } : {}) });
    return { checks, restoreTest };
}

;// CONCATENATED MODULE: ./src/steps/target.ts
// What both kinds of restore do before they change anything: the backup verified byte for
// byte, root on the host, and preflight failures that say nothing was changed.









/**
 * The backup, checked byte for byte before anything on the target changes; an encrypted
 * one with the identity file given (it is refused without one).
 */
async function verified(backupPath, reporter, identityFile) {
    const checks = await verifyBackup(backupPath, undefined, identityFile);
    const unchecked = checks.filter((c) => c.unchecked);
    if (unchecked.length > 0 && checks.every((c) => c.ok || c.unchecked))
        throw new InputError(`The backup ${backupPath} is encrypted (age): give the identity that decrypts it (option --identity-file, environment variable OWNCLOUD_BACKUP_IDENTITY, or the action's input 'identity'). Nothing was changed on the target.`);
    const failed = checks.filter((c) => !c.ok);
    if (failed.length > 0)
        throw new BackupError(`The backup ${backupPath} is damaged; nothing was changed on the target. ${failed.map((c) => c.what).join('; ')}`);
    reporter.info(`The backup is intact (${checks.length} checks).`);
    const manifest = JSON.parse((0,external_node_fs_namespaceObject.readFileSync)((0,external_node_path_namespaceObject.join)(backupPath, MANIFEST_NAME), 'utf8'));
    const archive = (role) => archiveFile(backupPath, manifest.archives.find((a) => a.role === role), identityFile);
    const delta = manifest.archives.find((a) => a.role === 'files-delta');
    return {
        directory: backupPath,
        manifest,
        filesArchive: archive('files'),
        ...(delta ? { filesDelta: archiveFile(backupPath, delta, identityFile) } : {}),
        dumpArchive: archive('database'),
    };
}
/** A verified backup directory as a restore's source: its archives stream from here. */
function directorySource(backup, configFiles) {
    const { manifest } = backup;
    const size = (role) => manifest.archives.find((a) => a.role === role)?.size ?? 0;
    return {
        facts: manifest,
        hostPrograms: ['tar', manifest.archives[0].compression],
        configFiles,
        filesBytes: size('files') + size('files-delta'),
        async putFiles(o) {
            // The base archive, then what changed inside the maintenance window over it (its
            // directories' entry lists also remove what was deleted then).
            for (const archive of [
                backup.filesArchive,
                ...(backup.filesDelta ? [backup.filesDelta] : []),
            ])
                await extractFiles({
                    host: o.host,
                    root: o.root,
                    archive,
                    layout: o.members,
                    incremental: archive === backup.filesDelta,
                    signal: o.signal,
                    progress: o.progress,
                    ...(o.pidFile ? { pidFile: o.pidFile } : {}),
                });
        },
        dump: backup.dumpArchive,
    };
}
/** argv prefix that runs a command as root on the host; needs root or passwordless sudo. */
async function target_rootOn(host) {
    if (host.account === 'root')
        return [];
    const result = reached(host, await host.run(['sudo', '-n', 'true']));
    if (result.exitCode !== 0)
        throw new BackupError(`A restore writes files of every owner: the SSH user ${host.account} on ${host.label} must be root or have passwordless sudo (${stderrTail(result.stderr) || 'sudo -n failed'}). Nothing was changed.`);
    return ['sudo', '-n', '--'];
}
/**
 * Runs the checks before the first change: whatever fails there says that nothing changed.
 */
async function unchanged(work) {
    try {
        return await work();
    }
    catch (error) {
        if (!(error instanceof BackupError || error instanceof InputError))
            throw error;
        if (/nothing was changed/i.test(error.message))
            throw error;
        const message = `${error.message.replace(/\.?$/, '.')} Nothing was changed on the target.`;
        throw error instanceof InputError ? new InputError(message) : new BackupError(message);
    }
}

;// CONCATENATED MODULE: ./src/restic-source.ts
// A backup in a restic repository as the restore's source, in host mode: restic runs on the
// target host (as root, which it needs to give the files their owners) and restores the
// snapshots there, so no file content crosses the runner; only the dump (into the database
// client) and the config files (read here to plan the restore) do.
//   the repository opened → the backup found (an id, a name, latest) → its manifest read →
//   every snapshot it names checked present → config files read.
// Putting the files in place: each part of the backup is restored (`restic restore
// --verify`: every file read back and compared) into a private directory beside where it
// goes, on the same file system, then renamed into place: nothing half-written is ever where
// the instance looks, and no byte is copied twice.












/** The name of the directory a part is restored into before it is renamed into place. */
const INCOMING_PREFIX = '.owncloud-restore-incoming-';
/**
 * The manifest snapshot of the backup `given` names: `latest` (the newest complete backup;
 * refused when the repository holds more than one instance's), a snapshot id or its first
 * characters (of any snapshot of the backup), or a backup name. Pure.
 */
function findBackup(snapshots, given) {
    const ours = snapshots.filter((s) => (s.tags ?? []).includes(RESTIC_TAG));
    const manifests = ours.filter((s) => tagValue(s, 'part') === 'manifest');
    const listHint = 'owncloud-backup list shows the backups in the repository';
    if (given === 'latest') {
        const listed = listedBackups(manifests);
        if (listed.length === 0)
            throw new BackupError(`The repository holds no complete backup of this tool (${listHint}).`);
        const instances = [...new Set(listed.map((b) => b.instance))];
        if (instances.length > 1)
            throw new InputError(`The repository holds backups of ${instances.length} instances (${instances.join(', ')}): 'latest' does not say which. Give the snapshot id of one (${listHint}).`);
        return manifests.find((s) => s.id === listed[0].snapshot);
    }
    const byName = ours.filter((s) => tagValue(s, 'backup') === given);
    const matching = byName.length > 0 ? byName : ours.filter((s) => s.id.startsWith(given));
    const names = [...new Set(matching.map((s) => tagValue(s, 'backup') ?? ''))];
    if (matching.length === 0)
        throw new BackupError(`No backup of this tool in the repository has the snapshot '${given}' (${listHint}).`);
    if (names.length > 1)
        throw new InputError(`The snapshot '${given}' is ambiguous: it is the start of snapshot ids of ${names.length} backups (${names.join(', ')}). Give more of the id.`);
    const manifest = manifests.find((s) => tagValue(s, 'backup') === names[0]);
    if (!manifest)
        throw new BackupError(`The backup ${names[0]} in the repository is incomplete (its run did not finish: it has no manifest snapshot) and cannot be restored (${listHint}).`);
    return manifest;
}
/**
 * Why a manifest read from a repository cannot be restored, or undefined: its format, and
 * every snapshot it names present in the repository with the backup's tags. Pure.
 */
function restic_source_manifestProblem(manifest, snapshots) {
    if (manifest.format !== RESTIC_MANIFEST_FORMAT)
        return `its manifest is of format '${String(manifest.format)}', this version restores ${RESTIC_MANIFEST_FORMAT} (restore it by hand with restic restore, as the README says)`;
    const missing = Object.entries(manifest.snapshots)
        .filter(([, id]) => !snapshots.some((s) => s.id.startsWith(id) && tagValue(s, 'backup') === manifest.name))
        .map(([part, id]) => `${part} (${id.slice(0, 8)})`);
    if (missing.length > 0)
        return `the snapshot${missing.length > 1 ? 's' : ''} ${missing.join(', ')} it names ${missing.length > 1 ? 'are' : 'is'} not in the repository`;
    return undefined;
}
/** Where a member of the backup goes on the target: below the member directory it is in. Pure. */
function memberTarget(member, members) {
    const root = member.split('/')[0];
    const base = members[root];
    if (base === undefined)
        throw new Error(`no target for the archive member '${member}'`);
    return external_node_path_namespaceObject.posix.join(base, member.slice(root.length)).replace(/(.)\/$/, '$1');
}
// Makes the private directory a part is restored into: beside the target on its file system
// ($1 target, $2 the directory's name); inside the target when the target is a directory
// that stays (a mount point the move aside emptied). Prints the directory.
const MAKE_INCOMING = String.raw `set -eu
target=$1
if [ -d "$target" ] && [ ! -L "$target" ]; then parent=$target; else parent=$(dirname -- "$target"); mkdir -p -- "$parent"; fi
dir="$parent/$2"
mkdir -m 0700 -- "$dir"
printf '%s' "$dir"`;
// Renames the restored part into place ($1 the directory restic restored into, $2 the path
// restic put it under there, $3 the target); a target that is a directory that stays gets
// what the part holds. Then removes the directory restic restored into.
const PLACE_PART = String.raw `set -eu
dir=$1; restored=$1$2; target=$3
if [ ! -e "$restored" ] && [ ! -L "$restored" ]; then echo "the snapshot holds no $2" >&2; exit 3; fi
if [ -d "$target" ] && [ ! -L "$target" ]; then
  find "$restored" -mindepth 1 -maxdepth 1 -exec mv -t "$target" -- {} +
else
  mv -T -- "$restored" "$target"
fi
rm -rf -- "$dir"`;
/** Reads the config files (config.php, *.config.php) of a `restic dump` of config/, here. */
async function configFilesOf(dumped, configDir) {
    const dir = (0,external_node_fs_namespaceObject.mkdtempSync)((0,external_node_path_namespaceObject.join)((0,external_node_os_namespaceObject.tmpdir)(), 'owncloud-restore-config-'));
    try {
        const tar = streamProcess([
            'tar',
            '--extract',
            '--file=-',
            `--directory=${dir}`,
            '--no-same-owner',
            '--no-same-permissions',
        ], { feedStdin: true });
        tar.stdout.resume();
        const feeding = (0,external_node_stream_promises_namespaceObject.pipeline)(dumped.stdout, tar.stdin).catch((error) => error);
        const [extracted] = await Promise.all([tar.done, dumped.done]);
        await feeding;
        if (extracted.exitCode !== 0)
            throw new BackupError(`Reading the config files of the backup failed: tar: ${stderrTail(extracted.stderr) || `exit ${extracted.exitCode}`}`);
        const read = (0,external_node_path_namespaceObject.join)(dir, configDir.replace(/^\/+/, ''));
        const files = {};
        for (const name of (0,external_node_fs_namespaceObject.readdirSync)(read))
            if (name === 'config.php' || name.endsWith('.config.php'))
                files[name] = (0,external_node_fs_namespaceObject.readFileSync)((0,external_node_path_namespaceObject.join)(read, name), 'utf8');
        if (!files['config.php'])
            throw new BackupError("The backup's installation snapshot holds no config/config.php: it cannot be restored.");
        return files;
    }
    finally {
        (0,external_node_fs_namespaceObject.rmSync)(dir, { recursive: true, force: true });
    }
}
/** restic's dump of a file as the restore's plaintext stream of the dump. */
function opened(stream) {
    return {
        stdout: stream.stdout,
        done: stream.done.then(() => ({ ok: true, problem: '' }), (error) => ({ ok: false, problem: error.message })),
        kill: () => stream.kill(),
    };
}
/**
 * Finds the backup in the repository from the target host and checks it there; the source
 * then restores from the repository onto that host.
 */
async function resticSource(host, root, from, reporter, signal) {
    const program = await findRestic(host, root);
    const repo = new ResticRepository(host, { ...from.restic }, program, root);
    await repo.open(false, { signal });
    const snapshots = await repo.snapshots({ tags: [RESTIC_TAG] });
    const chosen = findBackup(snapshots, from.snapshot);
    const name = tagValue(chosen, 'backup') ?? '';
    const text = await new Promise((resolve, reject) => {
        const stream = repo.dump(chosen.id, `/${RESTIC_MANIFEST_NAME}`, { signal });
        const chunks = [];
        stream.stdout.on('data', (chunk) => chunks.push(chunk));
        stream.done.then(() => resolve(Buffer.concat(chunks).toString('utf8')), reject);
    });
    let manifest;
    try {
        manifest = JSON.parse(text);
    }
    catch {
        throw new BackupError(`The manifest of ${name} (snapshot ${chosen.id.slice(0, 8)}) is not JSON: the backup cannot be restored.`);
    }
    const problem = restic_source_manifestProblem(manifest, snapshots);
    if (problem)
        throw new BackupError(`The backup ${name} in ${repo.label} cannot be restored: ${problem}.`);
    reporter.info(`Backup ${manifest.name} (manifest snapshot ${chosen.id.slice(0, 8)}) of ${manifest.instance.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud'} ${manifest.instance.version}, taken ${manifest.startedAt}: ${Object.keys(manifest.snapshots).length} snapshots, all present in ${repo.label} (restic ${repo.version} on ${host.label}).`);
    const configPart = manifest.files.parts.find((p) => p.part === 'install' && `${LAYOUT.install}/config`.startsWith(p.member));
    if (!configPart)
        throw new BackupError(`The manifest of ${manifest.name} names no part holding config/.`);
    const configDir = external_node_path_namespaceObject.posix.join(configPart.source, `${LAYOUT.install}/config`.slice(configPart.member.length));
    const configFiles = await configFilesOf(repo.dump(manifest.snapshots.install, configDir, { signal }), configDir);
    const dumpPath = `/${manifest.database.dumpFile}`;
    return {
        facts: manifest,
        hostPrograms: ['mv', 'find', 'dirname'],
        configFiles,
        filesBytes: 0,
        async putFiles(o) {
            const stamp = `${manifest.name.replace(/^owncloud-backup-/, '')}-${process.pid}`;
            // Outer parts first: a part inside another (a tarball install's data directory) is
            // renamed into the one before it.
            const parts = manifest.files.parts
                .map((part) => ({ ...part, target: memberTarget(part.member, o.members) }))
                .sort((a, b) => a.target.length - b.target.length);
            for (const part of parts) {
                const snapshot = part.part === 'install' ? manifest.snapshots.install : manifest.snapshots.files;
                const made = await mustRun(o.host, [...o.root, 'sh', '-c', MAKE_INCOMING, 'sh', part.target, `${INCOMING_PREFIX}${stamp}`], `Preparing the restore of ${part.target}`);
                const incoming = made.stdout;
                try {
                    await repo.restore(snapshot, incoming, {
                        include: [escapeResticPattern(part.source)],
                        verify: true,
                        signal: o.signal,
                    });
                    await mustRun(o.host, [...o.root, 'sh', '-c', PLACE_PART, 'sh', incoming, part.source, part.target], `Putting ${part.target} in place`);
                }
                finally {
                    await o.host
                        .run([...o.root, 'rm', '-rf', '--', incoming], { shielded: true })
                        .catch(() => undefined);
                }
                reporter.info(`${part.target}: restored from snapshot ${snapshot.slice(0, 8)} and checked.`);
            }
            reporter.info(`restic restore --verify read every restored file back (${formatBytes(manifest.files.bytes)}).`);
        },
        dump: {
            label: `${manifest.database.dumpFile} of snapshot ${manifest.snapshots.database.slice(0, 8)}`,
            open: (stepSignal) => opened(repo.dump(manifest.snapshots.database, dumpPath, { signal: stepSignal })),
        },
    };
}

;// CONCATENATED MODULE: ./src/restore.ts
// The restore orchestrator: a verified backup in, the instance as it was at backup time out.
//   verify → connect → read the backup's config → look at the target → preflight (tools,
//   version, space, database) → [maintenance on → current state moved aside (files renamed,
//   database dumped) → files back → config.php adjusted → database recreated and loaded
//   → data fingerprint → maintenance state as recorded] → closing check.
// Any failure after the first change puts the moved-aside state back (files, database,
// maintenance mode) before it is reported; the message says which state the instance is in.


























function restoreLayout(manifest, given) {
    const recorded = manifest.source;
    const installDir = given.owncloudDir || recorded.installDir;
    // A data directory inside the recorded installation moves with a new owncloud-dir.
    const dataDir = given.dataDir ??
        (recorded.dataDir.startsWith(`${recorded.installDir}/`)
            ? `${installDir}${recorded.dataDir.slice(recorded.installDir.length)}`
            : recorded.dataDir);
    const members = {
        [LAYOUT.install]: installDir,
        [LAYOUT.data]: dataDir,
    };
    if (manifest.files.layout[LAYOUT.absolute])
        members[LAYOUT.absolute] = '/';
    const installPaths = manifest.files.installPaths.map((p) => p === '.' ? installDir : external_node_path_namespaceObject.posix.join(installDir, p));
    return {
        installDir,
        dataDir,
        members,
        replaced: outermostPaths([...installPaths, dataDir, ...manifest.files.absolutePaths]),
    };
}
/** config.php values the restore replaces with what the user gave (pure). */
function configChanges(archived, connection, dataDir, overrides) {
    const changes = {};
    const text = (v) => (typeof v === 'string' ? v : v === undefined ? '' : String(v));
    const archivedDataDir = external_node_path_namespaceObject.posix.normalize(text(archived.datadirectory)).replace(/(.)\/+$/, '$1');
    if (archivedDataDir !== dataDir)
        changes.datadirectory = dataDir;
    if (overrides.name !== undefined && overrides.name !== text(archived.dbname))
        changes.dbname = overrides.name;
    if (overrides.user !== undefined && overrides.user !== text(archived.dbuser))
        changes.dbuser = overrides.user;
    if (overrides.password !== undefined && overrides.password !== text(archived.dbpassword))
        changes.dbpassword = overrides.password;
    if (overrides.host !== undefined || overrides.port !== undefined) {
        const host = connection.socket ?? connection.host ?? 'localhost';
        const dbhost = connection.port !== undefined ? `${host}:${connection.port}` : host;
        if (dbhost !== text(archived.dbhost))
            changes.dbhost = dbhost;
    }
    if (overrides.type !== undefined) {
        const dbtype = overrides.type === 'sqlite' ? 'sqlite3' : overrides.type;
        if (dbtype !== text(archived.dbtype))
            changes.dbtype = dbtype;
    }
    return changes;
}
/** Applies changes to config.php as ownCloud writes it (var_export), atomically, as its owner. */
const WRITE_CONFIG = `
$file = $argv[1];
$changes = json_decode(stream_get_contents(STDIN), true);
$CONFIG = null;
include $file;
if (!is_array($CONFIG)) { fwrite(STDERR, "$file defines no \\$CONFIG array\\n"); exit(3); }
foreach ($changes as $key => $value) $CONFIG[$key] = $value;
$text = "<?php\\n\\$CONFIG = " . var_export($CONFIG, true) . ";\\n";
$temporary = $file . '.owncloud-restore';
if (file_put_contents($temporary, $text) !== strlen($text)) { fwrite(STDERR, "could not write $temporary\\n"); exit(4); }
chmod($temporary, fileperms($file) & 0777);
if (!rename($temporary, $file)) { fwrite(STDERR, "could not replace $file\\n"); exit(5); }
if (function_exists('opcache_invalidate')) opcache_invalidate($file, true);
`;
/** Ownership of restored paths, skipping the containers of the previous state. */
const CHOWN = `
owner=$1; shift
for p; do
  find "$p" -name '.owncloud-restore-previous-*' -prune -o -exec chown -h -- "$owner:" {} +
done
`.trim();
/**
 * The config files in a backup's files archive, or the error reading them (kept until the
 * verification has spoken: a damaged backup is reported as damaged, not as unreadable).
 */
async function archivedConfigOf(backupPath, identityFile) {
    try {
        const manifest = JSON.parse((0,external_node_fs_namespaceObject.readFileSync)((0,external_node_path_namespaceObject.join)(backupPath, MANIFEST_NAME), 'utf8'));
        const files = manifest.archives.find((a) => a.role === 'files');
        if (!files || archiveNameProblem(files.name))
            return new BackupError('The manifest names no usable files archive.');
        return await readArchivedConfig(archiveFile(backupPath, files, identityFile));
    }
    catch (error) {
        return error instanceof Error ? error : new Error(String(error));
    }
}
/** The version of the server code in an installation, from its version.php ('' if none). */
async function codeVersion(host, installDir) {
    const result = reached(host, await host.run([
        'php',
        '-d',
        'display_errors=0',
        '-r',
        '$OC_Version = null; if (is_file($argv[1])) { include $argv[1]; } echo is_array($OC_Version) ? implode(".", $OC_Version) : "";',
        '--',
        `${installDir}/version.php`,
    ]));
    return result.exitCode === 0 ? result.stdout.trim() : '';
}
/** The owner of a path on the host, or undefined when it does not exist. */
async function ownerOf(host, path) {
    const result = reached(host, await host.run(['stat', '-c', '%u %U', '--', path]));
    if (result.exitCode !== 0)
        return undefined;
    const [uid, name] = result.stdout.trim().split(' ');
    return { uid: Number(uid), name: name ?? '' };
}
/** Free bytes on the file system that holds path (or its nearest existing parent). */
async function restore_freeBytes(host, path) {
    const result = reached(host, await host.run([
        'sh',
        '-c',
        'p=$1; while [ ! -e "$p" ]; do p=$(dirname -- "$p"); done; df -P -B1 -- "$p" | tail -n 1',
        'sh',
        path,
    ]));
    const fields = result.stdout.trim().split(/\s+/);
    return result.exitCode === 0 && fields.length >= 4 ? Number(fields[3]) : undefined;
}
/** The instance found on the target before the restore, if it is one that works. */
async function currentInstance(host, plan, installDir, context) {
    const config = reached(host, await host.run(['test', '-e', `${installDir}/config/config.php`]));
    if (config.exitCode !== 0)
        return undefined;
    try {
        return await discoverInstance(host, {
            target: plan.target,
            owncloudDir: installDir,
            database: {},
            ...(plan.occUser ? { occUser: plan.occUser } : {}),
        }, context.secrets);
    }
    catch (error) {
        if (!(error instanceof InputError || error instanceof BackupError))
            throw error;
        context.reporter.warning(`The target has ${installDir}/config/config.php but no working instance (${describeError(error)}): restoring without switching its maintenance mode.`);
        return undefined;
    }
}
async function runRestore(plan, context) {
    return withIdentity(plan.identity, (identityFile) => restore(plan, context, identityFile), context.ssh?.runtimeDir);
}
async function restore(plan, context, identityFile) {
    const { reporter, signal } = context;
    const started = performance.now();
    const interrupted = () => {
        if (signal.aborted)
            throw new InterruptedError('The restore was interrupted; nothing was changed.');
    };
    // A backup directory is verified here before the target is even reached; a repository's
    // backup is found (and its snapshots checked) from the target, where restic runs.
    let source;
    if (!plan.repository) {
        // The backup's config.php is read from its archive while the archive is verified (each
        // is a pass over the archive); it is used only once the verification has passed.
        const configRead = archivedConfigOf(plan.backupPath, identityFile);
        const backup = await reporter.group('Verify the backup', () => verified(plan.backupPath, reporter, identityFile));
        interrupted();
        const archivedConfig = await configRead;
        if (archivedConfig instanceof Error)
            throw archivedConfig;
        source = directorySource(backup, archivedConfig);
    }
    let host;
    try {
        host = await connectStep(reporter, plan.target, context.secrets, context.ssh);
        const connected = host;
        const root = await target_rootOn(connected);
        interrupted();
        const repository = plan.repository;
        if (repository)
            source = await unchanged(() => reporter.group('Find the backup in the restic repository', () => resticSource(connected, root, repository, reporter, signal)));
        interrupted();
        const backup = source;
        const manifest = backup.facts;
        const archivedConfig = backup.configFiles;
        const layout = restoreLayout(manifest, plan);
        const engine = engineFor(plan.database.type ?? manifest.database.type);
        // --- What is there, and what will be -----------------------------------------------
        const { installDirOwner, current, connection, changes, client, moves } = await unchanged(() => reporter.group('Preflight (nothing is changed yet)', async () => {
            const found = await currentInstance(connected, plan, layout.installDir, context);
            if (found)
                reporter.info(`The target runs ${found.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud'} ${found.version} in ${found.installDir} (maintenance mode ${found.maintenance ? 'on' : 'off'}): restoring in place.`);
            else
                reporter.info(`No running instance in ${layout.installDir}: restoring onto a new host.`);
            const reader = found?.owner ?? connected.account;
            const values = await readGivenConfig(connected, reader, archivedConfig, "the backup's config.php");
            context.secrets.add(typeof values.dbpassword === 'string' ? values.dbpassword : undefined);
            const target = resolveDatabase(values, plan.database, layout.dataDir);
            context.secrets.add(target.password);
            if (plan.dbAdmin)
                context.secrets.add(plan.dbAdmin.password);
            const changed = configChanges(values, target, layout.dataDir, plan.database);
            const needed = [...backup.hostPrograms, 'php', 'find', 'stat', 'df'];
            const missing = await missingOnHost(connected, needed);
            // The safety copy of the current database needs that engine's dump tool.
            if (plan.safetyCopy && found && found.database.type !== 'sqlite') {
                const dumpPrograms = engineFor(found.database.type).programs;
                const absent = await missingOnHost(connected, [...dumpPrograms]);
                if (absent.length === dumpPrograms.length)
                    missing.push(dumpPrograms.join(' or '));
            }
            const program = await findClient(connected, engine);
            if (!program)
                missing.push(engine.clients.join(' or '));
            if (missing.length > 0)
                throw new BackupError(`${connected.label} lacks ${missing.join(', ')}, which the restore needs: install ${missing.length > 1 ? 'them' : 'it'} there. Nothing was changed.`);
            // A package install's backup holds no server code: the target's must be the same version.
            if (manifest.source.installType === 'package') {
                const version = await codeVersion(connected, layout.installDir);
                if (version === '')
                    throw new BackupError(`${layout.installDir} on ${connected.label} holds no server code (no version.php): the backup is of a package install, so install ${manifest.instance.product} ${manifest.instance.version} there first. Nothing was changed.`);
                if (version !== manifest.instance.version) {
                    const message = `The server code in ${layout.installDir} is version ${version}, the backup is of version ${manifest.instance.version}`;
                    if (!plan.allowVersionMismatch)
                        throw new BackupError(`${message}: install ${manifest.instance.version}, or restore anyway with allow-version-mismatch (then run occ upgrade yourself). Nothing was changed.`);
                    reporter.warning(`${message}; restoring anyway (allow-version-mismatch).`);
                }
            }
            const needBytes = manifest.files.bytes + (plan.safetyCopy && found ? manifest.database.dumpBytes : 0);
            const free = await restore_freeBytes(connected, layout.dataDir);
            if (free !== undefined && free < needBytes)
                throw new BackupError(`Not enough space on ${connected.label} for ${layout.dataDir}: the restore needs ${formatBytes(needBytes)}${plan.safetyCopy ? ' (the previous state stays on disk beside it)' : ''}, ${formatBytes(free)} are free. Nothing was changed.`);
            const loadContext = {
                connection: target,
                client: program,
                account: connected.account,
                owner: found?.owner ?? connected.account,
                ...(plan.dbAdmin ? { admin: plan.dbAdmin } : {}),
            };
            if (engine.type !== 'sqlite') {
                const check = plan.dbAdmin
                    ? engine.adminCheckCommand(loadContext)
                    : engine.checkCommand({
                        connection: target,
                        tool: toolOf(engine, program),
                        account: connected.account,
                        owner: loadContext.owner,
                    });
                const result = await checkLogin(connected, check);
                if (result.exitCode !== 0 || result.stdout.trim() !== '1')
                    throw new BackupError(`The database check failed (nothing was changed): ${engine.explainFailure(result.stderr, plan.dbAdmin ? { ...target, user: plan.dbAdmin.user } : target) ?? (stderrTail(result.stderr) || `exit ${result.exitCode}`)}${plan.dbAdmin ? '' : " Without db-admin-user, the database must exist and the instance's user must reach it."}`);
            }
            const probe = await mustRun(connected, [...root, 'sh', '-c', PROBE_PATHS, 'sh', ...layout.replaced], 'Looking at the paths to replace');
            const flags = probe.stdout.split('\0');
            const planned = planMoves(layout.replaced.map((path, i) => ({
                path,
                exists: flags[i]?.[0] === 'e',
                mountPoint: flags[i]?.[1] === 'm',
            })), restoreStamp(new Date()));
            reporter.info(`To replace: ${layout.replaced.join(', ')}; database ${engine.type} '${target.name}'.`);
            const installDirOwner = (await ownerOf(connected, layout.installDir))?.name;
            return {
                installDirOwner: installDirOwner && installDirOwner !== 'UNKNOWN' ? installDirOwner : undefined,
                current: found,
                connection: target,
                changes: changed,
                client: program,
                moves: planned,
            };
        }));
        interrupted();
        return await replace({
            host: connected,
            installDirOwner,
            root,
            plan,
            context,
            backup,
            layout,
            engine,
            current,
            connection,
            changes,
            client,
            moves,
            started,
        });
    }
    finally {
        await host?.close();
    }
}
/** The changing part: every step from here on is undone if a later one fails. */
async function replace(r) {
    const { context, plan } = r;
    const { reporter, signal } = context;
    // Without a safety copy nothing is kept, so there is nothing to put back either.
    const containers = plan.safetyCopy
        ? [...new Set(r.moves.map(containerOf).filter((c) => !!c))]
        : [];
    const journal = {
        stamp: /previous-([^/]+)/.exec(containers[0] ?? '')?.[1] ?? restoreStamp(new Date()),
        installDir: r.layout.installDir,
        phase: 'preparing',
        containers,
        moved: plan.safetyCopy ? r.moves : [],
    };
    const run = {
        ...r,
        journal,
        note: (phase) => {
            if (phase)
                journal.phase = phase;
            context.onJournal?.(structuredClone(journal));
        },
        progress: (label, expectedBytes) => new StepProgress(label, {
            intervalSeconds: context.progressSeconds ?? DEFAULT_PROGRESS_SECONDS,
            now: () => performance.now(),
            emit: (line) => reporter.info(line),
            ...(expectedBytes !== undefined ? { expectedBytes } : {}),
        }),
        containers,
        stepPids: containers[0]
            ? {
                files: stepPidFile(containers[0], 'files'),
                database: stepPidFile(containers[0], 'database'),
            }
            : undefined,
        removing: false,
    };
    const maintenance = r.current
        ? new MaintenanceGuard(r.host, { installDir: r.current.installDir, user: r.current.owner }, (m) => reporter.info(m), 60, (record) => {
            journal.maintenance = record;
            run.note();
        })
        : undefined;
    const step = async (title, work) => {
        const result = await reporter.group(title, work);
        if (signal.aborted)
            throw new InterruptedError();
        return result;
    };
    try {
        run.note('moving-aside');
        if (maintenance)
            await step('Maintenance mode on', () => maintenance.enable());
        await step(plan.safetyCopy ? 'Move the current state aside' : 'Remove the current state', () => setCurrentStateAside(run));
        run.note('replacing');
        await step('Files', () => putFilesInPlace(run));
        const occUser = await step('Owners and config.php', () => ownersAndConfig(run));
        await step('Database', () => replaceDatabase(run, occUser));
        const tables = await step('Finish', () => finishRestore(run, occUser));
        run.note('done');
        const previous = await keepOrDiscardPrevious(run);
        return {
            manifest: r.backup.facts,
            target: r.host.label,
            inPlace: r.current !== undefined,
            ...(previous ? { previous } : {}),
            changedConfig: Object.keys(r.changes),
            tablesChecked: tables,
            seconds: (performance.now() - r.started) / 1000,
        };
    }
    catch (error) {
        return await putBackAfterFailure(run, maintenance, error);
    }
}
/** Moves the current state aside (files renamed, database dumped), or deletes it without a safety copy. */
async function setCurrentStateAside(run) {
    const { host, root, plan, layout, current, containers, journal, note } = run;
    const { reporter, signal } = run.context;
    if (!plan.safetyCopy) {
        run.removing = true;
        await mustRun(host, [
            ...root,
            'rm',
            '-rf',
            '--',
            ...run.moves.filter((m) => m.how !== 'absent').map((m) => m.original),
        ], 'Removing the current files (safety-copy false)', { shielded: true });
        reporter.info(`Removed ${layout.replaced.join(', ')} (no safety copy, as asked).`);
        return;
    }
    await mustRun(host, [...root, 'mkdir', '-p', '-m', '0700', '--', ...containers], 'Creating the safety copy directories', { shielded: true });
    // The previous database, while the old files still describe it.
    if (current && current.database.type !== 'sqlite') {
        const dumpPath = `${containers[0]}/database.sql`;
        journal.database = {
            type: current.database.type,
            name: current.database.name,
            dumpPath,
            replaced: false,
        };
        note();
        await dumpAside(host, root, engineFor(current.database.type), current, dumpPath, signal);
        reporter.info(`The current database '${current.database.name}' is saved in ${dumpPath}.`);
    }
    await mustRun(host, [...root, 'sh', '-c', MOVE_ASIDE, 'sh', ...moveArguments(run.moves)], 'Moving the current files aside', { shielded: true });
    for (const move of run.moves)
        if (move.how !== 'absent')
            reporter.info(`${move.original} → ${move.aside}`);
}
/** The backup's files into place on the host. */
async function putFilesInPlace(run) {
    const { host, root, backup, layout, stepPids, progress } = run;
    const { reporter, signal } = run.context;
    const manifest = backup.facts;
    const files = progress('Files', backup.filesBytes || undefined);
    await backup.putFiles({
        host,
        root,
        members: layout.members,
        signal,
        progress: files,
        ...(stepPids ? { pidFile: stepPids.files } : {}),
    });
    files.finish();
    if (stepPids)
        await mustRun(host, [...root, 'rm', '-f', '--', stepPids.files], 'Removing a pid file');
    reporter.info(`${manifest.files.fileCount} files (${formatBytes(manifest.files.bytes)}) restored.`);
}
/**
 * Owners (when the archive's do not exist here) and config.php (maintenance on until the end,
 * the given values); returns who runs occ.
 */
async function ownersAndConfig(run) {
    const { host, root, plan, layout } = run;
    const { reporter } = run.context;
    const configPath = `${layout.installDir}/config/config.php`;
    const archivedOwner = await ownerOf(host, configPath);
    if (!archivedOwner)
        throw new BackupError(`The restored files hold no ${configPath}.`);
    let owner = archivedOwner.name;
    if (plan.owner || owner === 'UNKNOWN' || owner === String(archivedOwner.uid)) {
        const wanted = plan.owner ?? run.installDirOwner ?? 'UNKNOWN';
        if (wanted === 'UNKNOWN')
            throw new BackupError(`The archive's owner (uid ${archivedOwner.uid}) does not exist on ${host.label}: name the web server's user with the owner input.`);
        await mustRun(host, [...root, 'sh', '-c', CHOWN, 'sh', wanted, ...layout.replaced], `Giving the restored files to ${wanted}`);
        reporter.info(`The restored files now belong to ${wanted}${plan.owner ? ' (owner input)' : ` (uid ${archivedOwner.uid} of the archive does not exist here)`}.`);
        owner = wanted;
    }
    const user = plan.occUser ?? owner;
    // Maintenance mode until the database is back, whatever the backup's config.php said.
    const values = { ...run.changes, maintenance: true };
    const result = reached(host, await host.run(asUser(host.account, user, ['php', '-r', WRITE_CONFIG, '--', configPath]), {
        input: JSON.stringify(values),
        shielded: true,
    }));
    if (result.exitCode !== 0)
        throw new BackupError(`Writing ${configPath} failed: ${stderrTail(result.stderr) || `php exit ${result.exitCode}`}`);
    const changed = Object.keys(run.changes);
    if (changed.length > 0)
        reporter.info(`config.php: ${changed.map((k) => (k === 'dbpassword' ? 'dbpassword (given)' : `${k} = ${run.changes[k]}`)).join(', ')}.`);
    return user;
}
/** The database emptied (or recreated) and the backup's dump loaded. */
async function replaceDatabase(run, occUser) {
    const { host, root, plan, backup, engine, connection, stepPids, journal, note, progress } = run;
    const { reporter, signal } = run.context;
    const manifest = backup.facts;
    const loadContext = {
        connection,
        client: run.client,
        account: host.account,
        owner: occUser,
        ...(plan.dbAdmin ? { admin: plan.dbAdmin } : {}),
    };
    if (journal.database)
        journal.database.replaced = true;
    else
        journal.database = {
            type: connection.type,
            name: connection.name,
            dumpPath: '',
            replaced: true,
        };
    note();
    const reset = engine.resetStep(loadContext);
    await runSql(host, reset.command, reset.sql, 'Preparing the database', engine, connection, signal);
    reporter.info(`Database: ${reset.summary}.`);
    const loading = progress('Database load', manifest.database.dumpBytes);
    const dropLines = engine.foreignOwnerLine && connection.user !== manifest.database.user
        ? engine.foreignOwnerLine
        : undefined;
    const loaded = await loadDump({
        host,
        engine,
        context: loadContext,
        dump: backup.dump,
        ...(dropLines ? { dropLines } : {}),
        signal,
        progress: loading,
        root,
        ...(stepPids ? { pidFile: stepPids.database } : {}),
    });
    loading.finish();
    if (stepPids)
        await mustRun(host, [...root, 'rm', '-f', '--', stepPids.database], 'Removing a pid file');
    reporter.info(`Loaded ${formatBytes(loaded.bytes)} of SQL with ${run.client}${loaded.dropped ? ` (${loaded.dropped} ownership statements naming ${manifest.database.user} left out: the objects belong to ${connection.user})` : ''}.`);
}
/** ownCloud's closing steps and checks; returns how many tables' rows were compared. */
async function finishRestore(run, occUser) {
    const { host, layout, backup } = run;
    const { reporter, signal } = run.context;
    const manifest = backup.facts;
    const occ = { installDir: layout.installDir, user: occUser };
    const runOcc = (args) => mustRun(host, occCommand(host, occ, args), `occ ${args.join(' ')}`, {
        shielded: true,
        timeoutMs: 300_000,
    });
    await runOcc(['maintenance:data-fingerprint']);
    reporter.info('occ maintenance:data-fingerprint: sync clients will re-sync instead of deleting.');
    if (signal.aborted)
        throw new InterruptedError();
    const status = JSON.parse((await runOcc(['status', '--output=json'])).stdout.trim().split('\n').pop() ?? '{}');
    if (status.installed !== true)
        throw new BackupError('occ status does not say installed after the restore.');
    if (status.version !== manifest.instance.version)
        throw new BackupError(`occ status says version ${status.version ?? '?'} after the restore; the backup is of ${manifest.instance.version}.`);
    const counted = await checkRowCounts(run, loadContext(run, occUser));
    if (signal.aborted)
        throw new InterruptedError();
    if (manifest.maintenance.priorState) {
        reporter.info("Maintenance mode stays on: it was on before the backup (the administrator's state).");
    }
    else {
        await runOcc(['maintenance:mode', '--off']);
        reporter.info('Maintenance mode off, as it was before the backup.');
    }
    return counted;
}
/** After success: the previous state kept (and measured), or removed (discard-previous). */
async function keepOrDiscardPrevious(run) {
    const { host, root, plan, containers } = run;
    const { reporter } = run.context;
    let previous;
    if (plan.safetyCopy && containers.length > 0) {
        const kept = [...containers];
        if (plan.discardPrevious) {
            const freed = await discardContainers(host, root, kept);
            reporter.info(`Removed the previous state (${formatBytes(freed)}; discard-previous).`);
        }
        else {
            const size = reached(host, await host.run([...root, 'sh', '-c', SIZE, 'sh', ...kept]));
            previous = { paths: kept, bytes: Number(size.stdout.trim()) || 0 };
            reporter.info(`The previous state is kept in ${kept.join(', ')} (${formatBytes(previous.bytes)}): remove it with owncloud-backup restore --cleanup once the instance works.`);
        }
    }
    return previous;
}
/** A failed restore: the previous state put back (when there is one), and why it failed. */
async function putBackAfterFailure(run, maintenance, error) {
    const { host, root, plan, context, journal, note } = run;
    const { signal } = context;
    if (journal.phase === 'moving-aside' || journal.phase === 'replacing') {
        // One line: a tool's stderr tail (several lines) would push the state off it.
        const cause = signal.aborted
            ? 'The restore was interrupted'
            : describeError(error)
                .replace(/\s*\n\s*/g, '; ')
                .replace(/\.$/, '');
        if (!plan.safetyCopy && run.removing)
            throw new RestoreError(`${cause}. The instance is INCOMPLETE: there was no safety copy (safety-copy false) to put back; restore again.`);
        try {
            await withReconnects(run, host, (session, first) => putBackPrevious(session, root, journal, plan, context, first ? maintenance : undefined));
        }
        catch (rollbackError) {
            throw new RestoreError(`${cause}. PUTTING THE PREVIOUS STATE BACK FAILED: ${describeError(rollbackError).replace(/\s*\n\s*/g, '; ')} The previous state is in ${journal.containers.join(', ')}: once the host is reachable, run the restore again (it moves what is there aside first), or move that state back by hand.`);
        }
        note('rolled-back');
        throw new RestoreError(`${cause}. The previous state is back: files, database and maintenance mode as they were before the restore.`);
    }
    throw error;
}
/** How long putting the previous state back keeps trying through a lost link. */
const ROLLBACK_RETRY_SECONDS = 120;
/**
 * Runs work on the host; when the link is lost (SSH), reconnects and runs it again until it
 * succeeds or the time is up. The work must be safe to run again (the put-back scripts are).
 */
async function withReconnects(r, host, work) {
    const deadline = Date.now() + (r.context.rollbackRetrySeconds ?? ROLLBACK_RETRY_SECONDS) * 1000;
    let current = host;
    try {
        for (let attempt = 1;; attempt++) {
            try {
                await work(current, attempt === 1);
                return;
            }
            catch (error) {
                if (!(error instanceof LinkError) || r.plan.target.kind !== 'ssh' || Date.now() >= deadline)
                    throw error;
                r.context.reporter.warning(`The link to the host failed while putting the previous state back (${describeError(error)}); reconnecting (attempt ${attempt}).`);
                await (0,promises_namespaceObject.setTimeout)(Math.min(2000 * attempt, 10_000));
                try {
                    const reconnected = await SshHost.connect(r.plan.target, r.context.ssh);
                    if (current !== host)
                        await current.close();
                    current = reconnected;
                }
                catch (connectError) {
                    r.context.reporter.info(`Not reachable yet: ${describeError(connectError)}`);
                }
            }
        }
    }
    finally {
        // The session opened here is this function's to end (the first one is the caller's).
        if (current !== host)
            await current.close();
    }
}
function loadContext(r, owner) {
    return {
        connection: r.connection,
        client: r.client,
        account: r.host.account,
        owner,
        ...(r.plan.dbAdmin ? { admin: r.plan.dbAdmin } : {}),
    };
}
/**
 * The closing check of the database: as many rows per table as the backup counted inside
 * its maintenance window. Returns the number of tables compared (0 for an older backup
 * whose manifest has no counts).
 */
async function checkRowCounts(r, context) {
    const recorded = r.backup.facts.database.rowCounts;
    if (!recorded) {
        r.context.reporter.warning('The backup records no row counts (made by an older version): the rows are not compared.');
        return 0;
    }
    const counted = await countRows(r.host, r.engine, {
        connection: context.connection,
        tool: toolOf(r.engine, r.client),
        account: context.account,
        owner: context.owner,
    }, undefined, { seconds: 600 });
    const differences = rowCountDifferences(recorded, counted);
    if (differences.length > 0)
        throw new BackupError(`The restored database does not hold what the backup counted: ${differences.slice(0, 5).join('; ')}${differences.length > 5 ? `; and ${differences.length - 5} more` : ''}.`);
    const rows = Object.values(counted).reduce((sum, n) => sum + n, 0);
    r.context.reporter.info(`Row counts: ${Object.keys(counted).length} tables, ${rows} rows, as the backup counted them.`);
    return Object.keys(counted).length;
}
async function discardContainers(host, root, containers) {
    const result = await mustRun(host, [...root, 'sh', '-c', DISCARD, 'sh', ...containers], 'Removing the previous state', { shielded: true });
    return Number(result.stdout.trim()) || 0;
}
/**
 * Puts the target back as it was before the restore: files (what the restore wrote goes),
 * then the database from the dump saved aside, then maintenance mode.
 */
async function putBackPrevious(host, root, journal, plan, context, maintenance) {
    const { reporter } = context;
    reporter.warning('Putting the previous state back.');
    // A step the lost link left running on the host (tar, the client) stops first.
    const container = journal.containers[0];
    if (container)
        await mustRun(host, [
            ...root,
            'sh',
            '-c',
            STOP_STEPS,
            'sh',
            stepPidFile(container, 'files'),
            stepPidFile(container, 'database'),
        ], 'Stopping what the restore left running', { shielded: true });
    await mustRun(host, [...root, 'sh', '-c', PUT_BACK, 'sh', ...moveArguments([...journal.moved].reverse())], 'Putting the previous files back', { shielded: true });
    reporter.info(`Files back: ${journal.moved.map((m) => m.original).join(', ')}.`);
    const saved = journal.database;
    if (saved?.replaced && saved.dumpPath) {
        // The previous instance's own config.php (back in place) says how to reach its database.
        const previous = await discoverInstance(host, {
            target: plan.target,
            owncloudDir: journal.installDir,
            database: {},
            ...(plan.occUser ? { occUser: plan.occUser } : {}),
        }, context.secrets);
        const engine = engineFor(previous.database.type);
        const client = await findClient(host, engine);
        if (!client)
            throw new BackupError(`${host.label} has no ${engine.clients.join(' or ')} to reload the previous database.`);
        const loadContext = {
            connection: previous.database,
            client,
            account: host.account,
            owner: previous.owner,
            ...(plan.dbAdmin ? { admin: plan.dbAdmin } : {}),
        };
        const reset = engine.resetStep(loadContext);
        await runSql(host, reset.command, reset.sql, 'Preparing the database for the previous state', engine, previous.database);
        const load = engine.loadCommand(loadContext);
        const result = reached(host, await host.run([...root, ...guardedCommand(readingFrom(saved.dumpPath, load.argv), load.delivery)], {
            input: secretLine(load.secret),
            keepStdinOpen: true,
            shielded: true,
        }));
        if (result.exitCode !== 0)
            throw new BackupError(`Reloading the previous database from ${saved.dumpPath} failed (exit ${result.exitCode}): ${stderrTail(result.stderr) || 'no message'}`);
        reporter.info(`Database '${saved.name}' back from ${saved.dumpPath}.`);
    }
    if (journal.containers.length > 0)
        await mustRun(host, [
            ...root,
            'sh',
            '-c',
            'for c; do rm -f -- "$c/database.sql"; rmdir -- "$c" 2>/dev/null || true; done',
            'sh',
            ...journal.containers,
        ], 'Removing the emptied safety copy directories', { shielded: true });
    if (maintenance)
        await maintenance.restore();
    else if (journal.maintenance && journal.maintenance.phase !== 'restored')
        await MaintenanceGuard.recover(host, journal.maintenance, (m) => reporter.info(m));
}
/**
 * For a process that outlives a killed restore (the action's post step): puts the previous
 * state back as the journal describes it.
 */
async function rollBackRestore(plan, journal, context) {
    if (journal.phase !== 'moving-aside' && journal.phase !== 'replacing')
        return;
    const full = { ...context, signal: new AbortController().signal };
    const host = await openHost(plan.target, full.secrets, full.ssh);
    try {
        await putBackPrevious(host, await rootOn(host), journal, plan, full, undefined);
    }
    finally {
        await host.close();
    }
}
/** `restore --cleanup`: removes what earlier restores moved aside, beside the given paths. */
async function cleanupPrevious(plan, context, paths) {
    const full = { ...context, signal: new AbortController().signal };
    const host = await connect_openHost(plan.target, full.secrets, full.ssh);
    try {
        const root = await target_rootOn(host);
        // The data directory as the instance's config.php says, when it is there to ask.
        const dataDir = plan.dataDir ??
            (await discoverInstance(host, { ...plan, owncloudDir: paths[0], database: {} }, context.secrets).then((found) => found.dataDir, () => undefined));
        const roots = [
            ...new Set([...paths, ...(dataDir ? [dataDir] : [])].flatMap((p) => [external_node_path_namespaceObject.posix.dirname(p), p])),
        ];
        // Containers sit beside each replaced path: in these directories or one level below
        // (themes/); so do the directories a restore from a restic repository restores into,
        // left behind only by a restore that was killed.
        const found = await mustRun(host, [
            ...root,
            'sh',
            '-c',
            'for d; do [ -d "$d" ] && find "$d" -mindepth 1 -maxdepth 2 -xdev -type d \\( -name ".owncloud-restore-previous-*" -o -name ".owncloud-restore-incoming-*" \\) -prune -print0; done; true',
            'sh',
            ...roots,
        ], 'Looking for the previous state of earlier restores');
        const containers = [...new Set(found.stdout.split('\0').filter(Boolean))];
        if (containers.length === 0)
            return { removed: [], bytes: 0 };
        const bytes = await discardContainers(host, root, containers);
        return { removed: containers, bytes };
    }
    finally {
        await host.close();
    }
}

;// CONCATENATED MODULE: ./src/steps/file-cache.ts
// The file cache rows of single restored files of an encrypted instance: after the scan they
// hold the size on disk and `encrypted = 0` (ownCloud would serve ciphertext); they get the
// values each file had at backup time, from the backup's index, in one transaction through
// the engine's client with the instance's credentials. Only rows of restored files change,
// matched by storage and path hash; a check afterwards proves every one holds its values.






const BATCH = 200;
function hex(text) {
    return Buffer.from(text, 'utf8').toString('hex').toUpperCase();
}
/** ownCloud's path_hash: md5 of the path's bytes. Pure. */
function pathHash(path) {
    return (0,external_node_crypto_namespaceObject.createHash)('md5').update(path, 'utf8').digest('hex');
}
function integer(value, what) {
    if (!Number.isSafeInteger(value) || value < 0)
        throw new BackupError(`The backup's encryption index holds an invalid ${what}: ${value}.`);
    return String(value);
}
/**
 * SQL that sets the rows' values in one transaction, then prints `rN` for every given row
 * N that holds them (one a line). Every value is a number, a hex digest or hex
 * digits turned into text by the engine: nothing from a name can change the statement. Pure.
 */
function cacheValuesSql(engine, tablePrefix, rows) {
    const filecache = engine.identifier(`${tablePrefix}filecache`);
    const storages = engine.identifier(`${tablePrefix}storages`);
    const storageOf = (id) => `(SELECT ${engine.identifier('numeric_id')} FROM ${storages} WHERE ${engine.identifier('id')} = ${engine.textFromHex(hex(id))})`;
    const where = (row) => `${engine.identifier('storage')} = ${storageOf(row.storage)} AND ${engine.identifier('path_hash')} = '${pathHash(row.path)}'`;
    const values = (row) => `${engine.identifier('encrypted')} = ${integer(row.encrypted, 'encrypted value')}, ${engine.identifier('size')} = ${integer(row.size, 'size')}, ${engine.identifier('unencrypted_size')} = ${integer(row.unencryptedSize, 'unencrypted size')}`;
    const statements = ['BEGIN;'];
    for (const row of rows)
        statements.push(`UPDATE ${filecache} SET ${values(row)} WHERE ${where(row)};`);
    statements.push('COMMIT;');
    // One line `rN` for each row N that holds its values (path hashes alone could repeat
    // across storages).
    for (let i = 0; i < rows.length; i += BATCH)
        statements.push(`${rows
            .slice(i, i + BATCH)
            .map((row, j) => `SELECT 'r${i + j}' FROM ${filecache} WHERE ${where(row)} AND ${values(row).replaceAll(', ', ' AND ')}`)
            .join(' UNION ALL ')};`);
    return `${statements.join('\n')}\n`;
}
/**
 * Gives the rows their values; resolves to the rows that hold them afterwards (all of them,
 * or the error names those that do not: a file the scan did not enter into the cache).
 */
async function setCacheValues(host, engine, context, rows) {
    if (rows.length === 0)
        return 0;
    const command = engine.scriptCommand(context);
    const result = reached(host, await host.run(guardedInputCommand(command.argv, command.delivery), {
        input: secretLine(command.secret) + cacheValuesSql(engine, context.connection.tablePrefix, rows),
        shielded: true,
    }));
    if (result.exitCode !== 0)
        throw new BackupError(`Writing the restored files' encryption values into the file cache failed (exit ${result.exitCode}; the transaction was not committed): ${engine.explainFailure(result.stderr, context.connection) ?? (stderrTail(withoutStatements(result.stderr)) || 'no message')}`);
    const holding = new Set(result.stdout
        .split('\n')
        .map((line) => line.trim())
        .filter((line) => /^r\d+$/.test(line)));
    const missing = rows.filter((_, n) => !holding.has(`r${n}`));
    if (missing.length > 0)
        throw new BackupError(`${missing.length} restored file${missing.length === 1 ? ' has' : 's have'} no file cache row with the recorded encryption values after the scan (${missing
            .slice(0, 5)
            .map((row) => `${row.storage} ${row.path}`)
            .join(', ')}${missing.length > 5 ? ', …' : ''}): ownCloud would serve them as they are on disk. Run occ files:scan for them and restore again.`);
    return rows.length;
}

;// CONCATENATED MODULE: ./src/steps/place-files.ts
// Single restored paths into a live instance: the backup's items, extracted into a private
// staging directory inside the data directory, are renamed into place one by one (same file
// system: instant, owners, modes, ACLs and xattrs as archived), by the conflict rule. What an
// item replaces moves into the restore's root-only container (nothing is lost), and with
// server-side encryption each placed file's keys come along. A failure undoes every rename
// this run made. PHP does it: every ownCloud host has it, and it handles any byte in a name.



const PLACE_FILES = String.raw `
$request = json_decode(stream_get_contents(STDIN), true);
$staging = $request['staging'];
$data = $request['dataDir'];
$container = $request['container'];
$rule = $request['rule'];
$module = $request['keyModule'] ?? null;
$journal = [];
$result = ['placed' => [], 'roots' => [], 'skipped' => [], 'unchanged' => 0, 'replaced' => 0, 'warnings' => []];

function fail($message) { throw new RuntimeException($message); }
function exists($path) { return @lstat($path) !== false; }
function isRealDir($path) { return is_dir($path) && !is_link($path); }
function mtimeOf($path) { return lstat($path)['mtime']; }

/** Creates the missing directories down to $dir with the owner and mode of the nearest existing one. */
function makeParents($dir, &$journal) {
    $missing = [];
    for ($d = $dir; !exists($d); $d = dirname($d)) array_unshift($missing, $d);
    if (!isRealDir($d)) fail("$d is not a directory");
    $stat = stat($d);
    foreach ($missing as $m) {
        if (!mkdir($m, $stat['mode'] & 07777)) fail("could not create $m");
        chown($m, $stat['uid']);
        chgrp($m, $stat['gid']);
        chmod($m, $stat['mode'] & 07777);
        $journal[] = ['mkdir', $m];
    }
    return $missing;
}

function move($from, $to, &$journal) {
    if (!rename($from, $to)) fail("could not move $from to $to");
    $journal[] = ['rename', $from, $to];
}

/** Moves what is at $path (relative to the data directory) into the container. */
function setAside($relative) {
    global $data, $container, $journal, $result;
    if (!exists($container)) {
        if (!mkdir($container, 0700)) fail("could not create $container");
        $journal[] = ['mkdir', $container];
    }
    $aside = $container . '/' . $relative;
    if (!exists(dirname($aside))) {
        $made = [];
        for ($d = dirname($aside); !exists($d); $d = dirname($d)) array_unshift($made, $d);
        foreach ($made as $m) {
            if (!mkdir($m, 0700)) fail("could not create $m");
            $journal[] = ['mkdir', $m];
        }
    }
    move($data . '/' . $relative, $aside, $journal);
    $result['replaced']++;
}

/** The files (and symlinks) in a tree, relative to it ('' for the tree itself when it is one). */
function filesIn($root, $relative = '') {
    $path = $relative === '' ? $root : "$root/$relative";
    if (!isRealDir($path)) return [$relative];
    $found = [];
    foreach (scandir($path) as $name) {
        if ($name === '.' || $name === '..') continue;
        foreach (filesIn($root, $relative === '' ? $name : "$relative/$name") as $f) $found[] = $f;
    }
    return $found;
}

function placed($user, $from, $to, $tree) {
    global $result;
    foreach (filesIn($tree) as $f) {
        $result['placed'][] = ['user' => $user, 'from' => $f === '' ? $from : "$from/$f", 'to' => $f === '' ? $to : "$to/$f", 'keys' => false];
    }
}

/** A name beside $path that is free: 'name (restored DATE).ext', then '... 2', '... 3'. */
function copyName($path, $suffix) {
    $dir = dirname($path);
    $base = basename($path);
    $dot = strrpos($base, '.');
    $isDir = isRealDir($path);
    $stem = (!$isDir && $dot !== false && $dot > 0) ? substr($base, 0, $dot) : $base;
    $ext = (!$isDir && $dot !== false && $dot > 0) ? substr($base, $dot) : '';
    for ($n = 1; ; $n++) {
        $candidate = "$dir/$stem$suffix" . ($n > 1 ? " $n" : '') . $ext;
        if (!exists($candidate)) return $candidate;
    }
}

/** Puts the staged $src at $dst (both relative to their roots: USER/...) by the rule. */
function merge($user, $from, $to) {
    global $staging, $data, $rule, $journal, $result;
    $src = "$staging/$user/$from";
    $dst = "$data/$user/$to";
    if (!exists($dst)) {
        makeParents(dirname($dst), $journal);
        move($src, $dst, $journal);
        placed($user, $from, $to, $dst);
        return;
    }
    if (isRealDir($src) && isRealDir($dst)) {
        foreach (scandir($src) as $name) {
            if ($name === '.' || $name === '..') continue;
            merge($user, "$from/$name", "$to/$name");
        }
        return;
    }
    $srcStat = lstat($src);
    $dstStat = lstat($dst);
    if (!isRealDir($src) && !isRealDir($dst) && $srcStat['size'] === $dstStat['size'] && $srcStat['mtime'] === $dstStat['mtime']) {
        $result['unchanged']++;
        return;
    }
    if ($rule !== 'overwrite') {
        if (isRealDir($dst) !== isRealDir($src)) {
            $result['skipped'][] = ['user' => $user, 'path' => $to, 'reason' => isRealDir($dst) ? 'a folder is in its place' : 'a file is in its place'];
            return;
        }
        if ($dstStat['mtime'] > $srcStat['mtime']) {
            $result['skipped'][] = ['user' => $user, 'path' => $to, 'reason' => 'the current file is newer'];
            return;
        }
    }
    setAside("$user/$to");
    move($src, $dst, $journal);
    placed($user, $from, $to, $dst);
}

/** The key directory of each placed file, from the backup's keys of the file it was. */
function placeKeys() {
    global $staging, $data, $module, $journal, $result;
    foreach ($result['placed'] as $i => $file) {
        $user = $file['user'];
        $src = "$staging/$user/files_encryption/keys/{$file['from']}/$module";
        if (!isRealDir($src)) continue;
        $dst = "$data/$user/files_encryption/keys/{$file['to']}/$module";
        if (exists($dst)) setAside("$user/files_encryption/keys/{$file['to']}/$module");
        makeParents(dirname($dst), $journal);
        move($src, $dst, $journal);
        $result['placed'][$i]['keys'] = true;
    }
}

function sameFile($a, $b) {
    return is_file($a) && is_file($b) && hash_file('sha256', $a) === hash_file('sha256', $b);
}

/** Refuses per-user keys that changed; brings back a master key that changed. */
function checkKeyPairs($kind, $users) {
    global $staging, $data, $module, $journal, $result;
    if ($kind === 'user') {
        foreach ($users as $user) {
            $key = "$user/files_encryption/$module/$user.publicKey";
            if (!is_file("$staging/$key")) fail("REFUSE:The backup holds no public key of $user ($key): the restored files' keys cannot be checked against the instance.");
            if (!is_file("$data/$key")) fail("REFUSE:$user has no key pair in the instance ($key is missing): the restored files could not be decrypted. Log in as $user once (ownCloud creates the keys), or restore the whole instance.");
            if (!sameFile("$staging/$key", "$data/$key")) fail("REFUSE:$user's key pair changed since the backup (their public key differs): the restored files' keys were made for the old pair and could not be read.");
        }
        return;
    }
    $dir = "files_encryption/$module";
    $keys = is_dir("$staging/$dir") ? array_values(array_filter(scandir("$staging/$dir"), function ($n) { return strpos($n, 'master_') === 0; })) : [];
    if (!$keys) fail("REFUSE:The backup holds no master key ($dir/master_*): the restored files' keys cannot be checked against the instance.");
    foreach ($keys as $name) {
        if (sameFile("$staging/$dir/$name", "$data/$dir/$name")) continue;
        if (exists("$data/$dir/$name")) setAside("$dir/$name");
        makeParents("$data/$dir", $journal);
        move("$staging/$dir/$name", "$data/$dir/$name", $journal);
        $result['warnings'][] = "The master key $name in the instance was missing or differed from the backup's: the backup's is back (the one it replaced is kept with the previous state).";
    }
}

try {
    $users = array_values(array_unique(array_map(function ($i) { return $i['user']; }, $request['items'])));
    if ($module !== null && isset($request['keyPairs'])) checkKeyPairs($request['keyPairs'], $users);
    foreach ($request['items'] as $item) {
        $user = $item['user'];
        $from = $item['path'];
        if (!exists("$staging/$user/$from")) fail("the backup's $user/$from was not extracted");
        if (!isRealDir("$data/$user")) fail("REFUSE:$user has no home in the data directory ($data/$user): is the user still there?");
        $to = $from;
        if ($rule === 'as-copy' && exists("$data/$user/$from")) {
            $to = substr(copyName("$data/$user/$from", $request['copySuffix']), strlen("$data/$user/"));
        }
        // The outermost path that is new, for the scan: the item, or its first missing parent.
        $root = $to;
        for ($p = dirname($to); $p !== '.' && !exists("$data/$user/$p"); $p = dirname($p)) $root = $p;
        merge($user, $from, $to);
        $result['roots'][] = ['user' => $user, 'path' => $root];
    }
    if ($module !== null) placeKeys();
} catch (Throwable $e) {
    // Undo this run's changes, newest first.
    foreach (array_reverse($journal) as $step) {
        if ($step[0] === 'rename') @rename($step[2], $step[1]);
        else @rmdir($step[1]);
    }
    $message = $e->getMessage();
    fwrite(STDERR, (strpos($message, 'REFUSE:') === 0 ? substr($message, 7) : $message . ' (every change of this restore was undone)') . "\n");
    exit(strpos($message, 'REFUSE:') === 0 ? 3 : 4);
}
echo json_encode($result, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE);
`;
/** Runs the placement on the host as root; the request travels on stdin. */
async function placeFiles(host, root, request) {
    const result = reached(host, await host.run([...root, 'php', '-d', 'display_errors=stderr', '-r', PLACE_FILES], {
        input: JSON.stringify(request),
        shielded: true,
    }));
    const said = stderrTail(result.stderr);
    // 3: refused before anything moved; 4: failed, and every move was undone.
    if (result.exitCode === 3)
        throw new BackupError(`${said} Nothing was changed on the target.`);
    if (result.exitCode !== 0)
        throw new BackupError(`Putting the restored files in place failed on ${host.label} (exit ${result.exitCode}): ${said || 'no message'}`);
    return JSON.parse(result.stdout);
}

;// CONCATENATED MODULE: ./src/restore-paths.ts
// Single paths back into a live instance (restore --path), and what a backup holds under a
// path (restore --list).
//   verify ‖ list the wanted members → connect → the instance found (locked against a
//   backup) → preflight → extract the members into a private staging directory in the data
//   directory → put each in place by the conflict rule (replaced items kept aside; keys
//   along with encryption) → occ files:scan → with encryption, the cache rows' recorded
//   values → the staging directory removed.
// No maintenance mode and no database replacement: the rest of the instance runs on.






















const KEY_MODULE_DEFAULT = 'OC_DEFAULT_MODULE';
/** The archive member of a user's path. Pure. */
function memberOf(user, path) {
    return `${LAYOUT.data}/${user}/${path}`;
}
/** The date a copy's name carries: the backup's (it says which state the copy is). Pure. */
function copySuffix(manifest) {
    return ` (restored ${manifest.startedAt.slice(0, 10)})`;
}
/**
 * What to extract for the requested paths: each path, its files' key directories, the key
 * pairs to compare, and the first copy of any hard link whose other name is requested. Pure.
 */
function selectMembers(entries, paths, encryption) {
    const requested = paths.map((p) => memberOf(p.user, p.path));
    const members = new Set();
    const found = [];
    const names = new Set(entries.map((e) => e.name));
    for (const [i, member] of requested.entries()) {
        if (!names.has(member))
            throw new BackupError(`The backup holds no '${paths[i].user}/${paths[i].path}' (see restore --list ${paths[i].user}/${paths[i].path.split('/')[0]}). Nothing was changed on the target.`);
        members.add(member);
    }
    for (const entry of entries) {
        if (requested.some((r) => isAtOrBelow(entry.name, r))) {
            found.push(entry);
            // A hard link's first copy sits elsewhere in the archive: tar needs it to make the link.
            if (entry.type === 'hardlink' &&
                entry.linkTarget &&
                !requested.some((r) => isAtOrBelow(entry.linkTarget, r)))
                members.add(entry.linkTarget);
        }
        if (!encryption)
            continue;
        for (const p of paths) {
            const keys = memberOf(p.user, `files_encryption/keys/${p.path}`);
            if (entry.name === keys)
                members.add(keys);
            if (encryption.keyPairs === 'user' &&
                entry.name === memberOf(p.user, `files_encryption/${encryption.module}/${p.user}.publicKey`))
                members.add(entry.name);
        }
        if (encryption.keyPairs === 'master' &&
            entry.name.startsWith(`${LAYOUT.data}/files_encryption/${encryption.module}/master_`))
            members.add(entry.name);
    }
    return { members: [...members], found };
}
/**
 * The archive's entries a --path restore needs to see: at or below each path and its keys,
 * and the key pairs (the rest of a big archive is not held in memory).
 */
function wantedBy(paths) {
    const roots = paths.flatMap((p) => [
        memberOf(p.user, p.path),
        memberOf(p.user, `files_encryption/keys/${p.path}`),
    ]);
    const keyPairDirs = [...new Set(paths.map((p) => memberOf(p.user, 'files_encryption/')))];
    return (name) => roots.some((r) => isAtOrBelow(name, r)) ||
        keyPairDirs.some((d) => name.startsWith(d) && !name.startsWith(`${d}keys/`)) ||
        name.startsWith(`${LAYOUT.data}/files_encryption/`);
}
/**
 * How keys travel with the restored files: as the manifest's encryption record says, or, for
 * a backup made before the record existed, by what the archive holds (key directories of the
 * restored paths: they come along, without the key pair check). Pure.
 */
function encryptionOf(manifest, entries, paths) {
    const encryption = manifest.encryption;
    if (!encryption)
        return entries.some((e) => paths.some((p) => isAtOrBelow(e.name, memberOf(p.user, `files_encryption/keys/${p.path}`))))
            ? { module: KEY_MODULE_DEFAULT }
            : undefined;
    if (!encryption.enabled)
        return undefined;
    return {
        module: encryption.module || KEY_MODULE_DEFAULT,
        keyPairs: encryption.mode === 'master-key' ? 'master' : 'user',
    };
}
/** The backup's files archives, as its manifest names them. */
function filesArchivesOf(backupPath, manifest, identityFile) {
    const base = manifest.archives.find((a) => a.role === 'files');
    const delta = manifest.archives.find((a) => a.role === 'files-delta');
    if (delta && archiveNameProblem(delta.name))
        throw new BackupError('The manifest names no usable files-delta archive.');
    return {
        base: archiveFile(backupPath, base, identityFile),
        ...(delta ? { delta: archiveFile(backupPath, delta, identityFile) } : {}),
    };
}
/** The archive's entries the paths need, or the error listing them (kept until verified). */
async function listWanted(plan, identityFile) {
    try {
        const manifest = readManifest(plan.backupPath);
        const files = manifest.archives.find((a) => a.role === 'files');
        if (!files || archiveNameProblem(files.name))
            return new BackupError('The manifest names no usable files archive.');
        return await listBackupFiles(filesArchivesOf(plan.backupPath, manifest, identityFile), wantedBy(plan.paths));
    }
    catch (error) {
        return error instanceof Error ? error : new Error(String(error));
    }
}
async function runPathRestore(plan, context) {
    return withIdentity(plan.identity, (identityFile) => pathRestore(plan, context, identityFile), context.ssh?.runtimeDir);
}
async function pathRestore(plan, context, identityFile) {
    const { reporter, signal } = context;
    const started = performance.now();
    const interrupted = () => {
        if (signal.aborted)
            throw new InterruptedError('The restore was interrupted; nothing was changed.');
    };
    // The wanted entries are listed while the archive is verified (each a pass over it); the
    // listing is used only once the verification has passed.
    const listing = listWanted(plan, identityFile);
    const backup = await reporter.group('Verify the backup', () => verified(plan.backupPath, reporter, identityFile));
    const { manifest } = backup;
    const filesArchive = manifest.archives.find((a) => a.role === 'files');
    const { selection, encryption } = await reporter.group('Find the paths in the backup', async () => {
        const entries = await listing;
        if (entries instanceof Error)
            throw entries;
        const keys = encryptionOf(manifest, entries, plan.paths);
        if (keys && !manifest.encryption)
            reporter.warning('The backup predates the record of server-side encryption, and holds key files for these paths: they are restored with the files, but without the file cache values of encrypted files (users download each such file once to correct its size).');
        const chosen = selectMembers(entries, plan.paths, keys);
        const files = chosen.found.filter((e) => e.type !== 'directory');
        reporter.info(`The backup of ${manifest.startedAt} holds ${files.length} file${files.length === 1 ? '' : 's'} (${files.reduce((n, e) => n + e.size, 0)} bytes) under ${plan.paths.map((p) => `${p.user}/${p.path}`).join(', ')}.`);
        return { selection: chosen, encryption: keys };
    });
    const index = encryption
        ? await readEncryptionIndex(backup.directory, manifest, (storage, path) => plan.paths.some((p) => storage === `home::${p.user}` && isAtOrBelow(path, p.path)), identityFile)
        : [];
    interrupted();
    let host;
    let lock;
    try {
        host = await connectStep(reporter, plan.target, context.secrets, context.ssh);
        const connected = host;
        const root = await unchanged(() => target_rootOn(connected));
        const installDir = plan.owncloudDir || manifest.source.installDir;
        const { instance, client } = await unchanged(() => reporter.group('Preflight (nothing is changed yet)', async () => {
            const found = await discoverInstance(connected, { ...plan, owncloudDir: installDir, database: {} }, context.secrets);
            reporter.info(`The target runs ${found.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud'} ${found.version} in ${found.installDir}, data directory ${found.dataDir}.`);
            if (found.instanceId !== manifest.instance.instanceId)
                reporter.warning(`The backup is of instance ${manifest.instance.instanceId}, the target runs instance ${found.instanceId}: restoring into it anyway.`);
            const missing = await missingOnHost(connected, ['tar', 'php', filesArchive.compression]);
            const engine = engineFor(found.database.type);
            const program = index.length > 0 ? await findClient(connected, engine) : undefined;
            if (index.length > 0 && !program)
                missing.push(engine.clients.join(' or '));
            if (missing.length > 0)
                throw new BackupError(`${connected.label} lacks ${missing.join(', ')}, which the restore needs: install ${missing.length > 1 ? 'them' : 'it'} there.`);
            return { instance: found, client: program };
        }));
        interrupted();
        // Not while a backup or another restore of this instance runs.
        lock = await acquireLock(connected, instance.installDir, holderName(process.pid, (0,external_node_os_namespaceObject.hostname)(), new Date()), (heldBy) => `A backup or restore of the instance in ${instance.installDir} on ${connected.label} is running (${heldBy}). Wait for it to finish. Nothing was changed on the target.`, (argv) => asUser(connected.account, instance.owner, argv));
        interrupted();
        return await restorePaths({
            host: connected,
            root,
            plan,
            context,
            manifest,
            filesArchive: backup.filesArchive,
            ...(backup.filesDelta ? { filesDelta: backup.filesDelta } : {}),
            archiveBytes: manifest.archives
                .filter((a) => a.role === 'files' || a.role === 'files-delta')
                .reduce((sum, a) => sum + a.size, 0),
            instance,
            selection,
            encryption,
            index,
            client,
            started,
        });
    }
    finally {
        await lock?.release();
        await host?.close();
    }
}
async function restorePaths(run) {
    const { host, root, plan, context, manifest, instance, encryption } = run;
    const { reporter } = context;
    // A random tail: two restores within one second never share a container.
    const container = `${instance.dataDir}/${containerName(`${restoreStamp(new Date())}-${(0,external_node_crypto_namespaceObject.randomBytes)(3).toString('hex')}`)}`;
    const staging = `${container}/.staging`;
    await mustRun(host, [...root, 'mkdir', '-m', '700', '--', container, staging], 'Creating the staging directory');
    let kept = false;
    try {
        await reporter.group('Extract the paths (on the host)', async () => {
            let sentBytes = 0;
            // The base archive, then the delta over it (which also removes what was deleted).
            for (const archive of [run.filesArchive, ...(run.filesDelta ? [run.filesDelta] : [])]) {
                const sent = await extractMembers({
                    host,
                    root,
                    archive,
                    member: LAYOUT.data,
                    target: staging,
                    members: run.selection.members,
                    incremental: archive === run.filesDelta,
                    signal: context.signal,
                }).catch((error) => {
                    if (context.signal.aborted)
                        throw new InterruptedError('The restore was interrupted; nothing was changed.');
                    throw error;
                });
                sentBytes += sent.sentBytes;
            }
            reporter.info(`Sent the host ${formatBytes(sentBytes)}: the restored members only, uncompressed (the whole archive is ${formatBytes(run.archiveBytes)} compressed).`);
        });
        // From here on the steps are short and each leaves the instance consistent: they finish.
        const placement = await reporter.group('Put the files in place', async () => {
            const placed = await placeFiles(host, root, {
                staging,
                dataDir: instance.dataDir,
                container,
                rule: plan.conflicts,
                copySuffix: copySuffix(manifest),
                items: plan.paths,
                ...(encryption ? { keyModule: encryption.module } : {}),
                ...(encryption?.keyPairs ? { keyPairs: encryption.keyPairs } : {}),
            });
            for (const warning of placed.warnings)
                reporter.warning(warning);
            reporter.info(placementLine(placed, plan.conflicts));
            for (const s of placed.skipped.slice(0, 20))
                reporter.info(`Skipped ${s.user}/${s.path}: ${s.reason}.`);
            if (placed.skipped.length > 20)
                reporter.info(`… and ${placed.skipped.length - 20} more skipped.`);
            return placed;
        });
        kept = placement.replaced > 0;
        // ownCloud learns about the files in users' files/; versions and trash bin entries are
        // not scanned (ownCloud lists them from the disk).
        const scanned = [];
        const filesOnly = [];
        for (const r of placement.roots) {
            const shown = `${r.user}/${r.path}`;
            if (r.path === 'files' || r.path.startsWith('files/'))
                scanned.push(`/${shown}`);
            else
                filesOnly.push(shown);
        }
        if (scanned.length > 0 && placement.placed.length > 0)
            await reporter.group('Tell ownCloud (occ files:scan)', async () => {
                for (const path of scanned)
                    await mustRun(host, occCommand(host, { installDir: instance.installDir, user: instance.owner }, [
                        'files:scan',
                        `--path=${path}`,
                    ]), `occ files:scan --path=${path}`);
                reporter.info(`Scanned ${scanned.join(', ')}.`);
            });
        if (filesOnly.length > 0)
            reporter.info(`${filesOnly.join(', ')}: restored as files (with their keys); occ files:scan does not scan versions and the trash bin, and ownCloud lists them from the disk.`);
        let cacheRows = 0;
        if (encryption && run.index.length > 0) {
            const rows = cacheRowsFor(placement.placed, run.index);
            const missingKeys = placement.placed.filter((p) => !p.keys && rows.some((r) => r.path === p.to && r.storage === `home::${p.user}`));
            for (const p of missingKeys.slice(0, 10))
                reporter.warning(`The backup holds no keys for the encrypted ${p.user}/${p.from}: it cannot be read.`);
            if (rows.length > 0)
                cacheRows = await reporter.group('File cache: the encryption values at backup time', async () => {
                    const engine = engineFor(instance.database.type);
                    const count = await setCacheValues(host, engine, {
                        connection: instance.database,
                        client: run.client,
                        account: host.account,
                        owner: instance.owner,
                    }, rows);
                    reporter.info(`${count} file cache row${count === 1 ? '' : 's'} hold the encrypted flag and sizes recorded at backup time.`);
                    return count;
                });
        }
        return {
            manifest,
            target: host.label,
            placed: placement.placed,
            skipped: placement.skipped,
            unchanged: placement.unchanged,
            ...(kept ? { previous: container } : {}),
            replaced: placement.replaced,
            scanned,
            filesOnly,
            cacheRows,
            seconds: (performance.now() - run.started) / 1000,
        };
    }
    finally {
        // The staging directory always goes; the container only when it is empty (whatever a
        // failed run could not put back stays in it, and the message names it).
        const cleaned = await host.run([
            ...root,
            'sh',
            '-c',
            'rm -rf -- "$1" && { rmdir -- "$2" 2>/dev/null || true; }',
            'sh',
            staging,
            container,
        ], { shielded: true });
        if (cleaned.exitCode !== 0)
            reporter.warning(`Could not remove the staging directory ${staging}: ${cleaned.stderr.trim()}`);
        else if (!kept) {
            const left = await host.run([...root, 'test', '-e', container], { shielded: true });
            if (left.exitCode === 0)
                reporter.warning(`${container} holds what this restore could not put back: look at it before removing it (owncloud-backup restore --cleanup).`);
        }
    }
}
function placementLine(placement, rule) {
    const parts = [
        `${placement.placed.length} file${placement.placed.length === 1 ? '' : 's'} restored`,
    ];
    if (placement.unchanged > 0)
        parts.push(`${placement.unchanged} already as in the backup`);
    if (placement.replaced > 0)
        parts.push(`${placement.replaced} current item${placement.replaced === 1 ? '' : 's'} kept with the previous state`);
    if (placement.skipped.length > 0)
        parts.push(`${placement.skipped.length} skipped${rule === 'keep-newer' ? ' (restore them with --overwrite, or beside the current ones with --as-copy)' : ''}`);
    return `${parts.join(', ')}.`;
}
/** The recorded cache values of each placed file that was encrypted at backup time. Pure. */
function cacheRowsFor(placed, index) {
    const byKey = new Map(index.map((f) => [`${f.storage}\0${f.path}`, f]));
    const rows = [];
    for (const p of placed) {
        const recorded = byKey.get(`home::${p.user}\0${p.from}`);
        if (!recorded)
            continue;
        rows.push({
            storage: recorded.storage,
            path: p.to,
            encrypted: recorded.encrypted,
            size: recorded.size,
            unencryptedSize: recorded.unencryptedSize,
        });
    }
    return rows;
}
/** `restore --list USER/files/DIR`: what the backup holds under a path (no host involved). */
async function listBackupPath(backupPath, given, identity) {
    const manifest = readManifest(backupPath);
    const member = memberOf(given.user, given.path);
    const entries = await withIdentity(identity, (identityFile) => listBackupFiles(filesArchivesOf(backupPath, manifest, identityFile), (name) => isAtOrBelow(name, member)));
    if (entries.length === 0)
        throw new BackupError(`The backup holds nothing under '${given.user}/${given.path}'.`);
    return { manifest, entries };
}

;// CONCATENATED MODULE: ./src/secrets.ts
/**
 * Every secret the run learns (database password, SSH key), registered the moment it is
 * known: the registry masks it in the GitHub log (through the mask callback) and redacts
 * it from every message this tool writes.
 */
class Secrets {
    values = new Set();
    mask;
    constructor(mask = () => { }) {
        this.mask = mask;
    }
    add(value) {
        if (!value || this.values.has(value))
            return;
        this.values.add(value);
        this.mask(value);
        // Multi-line secrets (keys) are masked line by line too, as they may be logged that way.
        for (const line of value.split(/\r?\n/)) {
            const trimmed = line.trim();
            if (trimmed.length >= 8 && !this.values.has(trimmed)) {
                this.values.add(trimmed);
                this.mask(trimmed);
            }
        }
    }
    /** The text with every known secret replaced by `***`. */
    redact(text) {
        let out = text;
        // Longest first, so a secret containing another is replaced whole.
        for (const value of [...this.values].sort((a, b) => b.length - a.length))
            out = out.split(value).join('***');
        return out;
    }
}

;// CONCATENATED MODULE: ./src/settings.ts
// What the user asked for, validated into a plan before anything touches the host. The
// action's inputs and the command line's options carry the same names (INPUTS), so one
// validation serves both; each error names the input and the form expected.



/** Input names: the action's `with:` keys and the command line's `--options`. */
const INPUTS = {
    host: 'host',
    port: 'port',
    user: 'user',
    sshKey: 'ssh-key',
    knownHosts: 'known-hosts',
    owncloudDir: 'owncloud-dir',
    dataDir: 'data-dir',
    extraPaths: 'extra-paths',
    exclude: 'exclude',
    installType: 'install-type',
    dbType: 'db-type',
    dbHost: 'db-host',
    dbPort: 'db-port',
    dbName: 'db-name',
    dbUser: 'db-user',
    dbPassword: 'db-password',
    maintenanceMode: 'maintenance-mode',
    occUser: 'occ-user',
    compression: 'compression',
    backupDir: 'backup-dir',
    dumpTimeout: 'dump-timeout',
    restoreTest: 'restore-test',
    encryptTo: 'encrypt-to',
    identity: 'identity',
    // Retention: of backup directories (command line) and of restic repositories.
    keepLast: 'keep-last',
    keepDaily: 'keep-daily',
    keepWeekly: 'keep-weekly',
    keepMonthly: 'keep-monthly',
    keepYearly: 'keep-yearly',
    // Where the backup goes: a backup directory (artifact) or a restic repository.
    destination: 'destination',
    resticRepository: 'restic-repository',
    resticPassword: 'restic-password',
    resticEnv: 'restic-env',
    resticOption: 'restic-option',
    resticInit: 'restic-init',
    check: 'check',
    // Restore only.
    dbAdminUser: 'db-admin-user',
    dbAdminPassword: 'db-admin-password',
    safetyCopy: 'safety-copy',
    discardPrevious: 'discard-previous',
    owner: 'owner',
    allowVersionMismatch: 'allow-version-mismatch',
    /** The backup in a restic repository to restore: a snapshot id, a backup name, or latest. */
    snapshot: 'snapshot',
    // Restore of single paths only.
    path: 'path',
    asCopy: 'as-copy',
    overwrite: 'overwrite',
};
/** Inputs of a restore only (the backup action does not declare them). */
const RESTORE_ONLY = [
    INPUTS.dbAdminUser,
    INPUTS.dbAdminPassword,
    INPUTS.safetyCopy,
    INPUTS.discardPrevious,
    INPUTS.owner,
    INPUTS.allowVersionMismatch,
    INPUTS.snapshot,
    INPUTS.path,
    INPUTS.asCopy,
    INPUTS.overwrite,
];
/**
 * Inputs of the command line's backup only, which the action does not declare (none now:
 * the action takes the restic destination and its retention too).
 */
const CLI_ONLY = (/* unused pure expression or super */ null && ([]));
/** The retention rules: for backup directories and restic repositories, not artifacts. */
const KEEP_INPUTS = [
    INPUTS.keepLast,
    INPUTS.keepDaily,
    INPUTS.keepWeekly,
    INPUTS.keepMonthly,
    INPUTS.keepYearly,
];
/** Inputs of a whole-instance restore that mean nothing when single paths come back. */
const WHOLE_RESTORE_ONLY = [
    INPUTS.dbAdminUser,
    INPUTS.dbAdminPassword,
    INPUTS.safetyCopy,
    INPUTS.discardPrevious,
    INPUTS.owner,
    INPUTS.allowVersionMismatch,
    INPUTS.dbType,
    INPUTS.dbHost,
    INPUTS.dbPort,
    INPUTS.dbName,
    INPUTS.dbUser,
    INPUTS.dbPassword,
];
/** Inputs that only mean something for an SSH connection (with `host`). */
const SSH_ONLY = [
    INPUTS.port,
    INPUTS.user,
    INPUTS.sshKey,
    INPUTS.knownHosts,
];
const actionLabel = (name) => `input '${name}'`;
const cliLabel = (name) => `option --${name}`;
const KEY_TYPES = new Set([
    'ssh-ed25519',
    'ssh-rsa',
    'ecdsa-sha2-nistp256',
    'ecdsa-sha2-nistp384',
    'ecdsa-sha2-nistp521',
    'sk-ssh-ed25519@openssh.com',
    'sk-ecdsa-sha2-nistp256@openssh.com',
    'ssh-dss',
]);
function words(value) {
    return (value ?? '')
        .split(/\r?\n/)
        .map((line) => line.trim())
        .filter((line) => line !== '' && !line.startsWith('#'));
}
/** The validators every plan uses, bound to the raw inputs and their labels. */
function validators(raw, label) {
    const value = (name) => (raw[name] ?? '').trim();
    const fail = (name, message) => {
        throw new InputError(`Invalid ${label(name)}: ${message}`);
    };
    const oneOf = (name, allowed, fallback) => {
        const given = value(name).toLowerCase();
        if (given === '')
            return fallback;
        if (!allowed.includes(given))
            fail(name, `'${value(name)}' is not supported. Expected one of: ${allowed.join(', ')}.`);
        return given;
    };
    const integer = (name, min, max) => {
        const given = value(name);
        if (given === '')
            return undefined;
        if (!/^\d+$/.test(given) || Number(given) < min || Number(given) > max)
            fail(name, `'${given}' is not a whole number from ${min} to ${max}.`);
        return Number(given);
    };
    const boolean = (name, fallback) => {
        const given = value(name).toLowerCase();
        if (given === '')
            return fallback;
        if (['true', 'yes', 'on', '1'].includes(given))
            return true;
        if (['false', 'no', 'off', '0'].includes(given))
            return false;
        return fail(name, `'${value(name)}' is not a boolean. Expected true or false.`);
    };
    const absolutePath = (name, given) => {
        if (given.includes('\0'))
            fail(name, 'the path contains a NUL byte.');
        if (given.startsWith('-'))
            fail(name, `'${given}' starts with '-'. Expected an absolute path.`);
        if (!(0,external_node_path_namespaceObject.isAbsolute)(given))
            fail(name, `'${given}' is not an absolute path.`);
        const normal = (0,external_node_path_namespaceObject.normalize)(given);
        return normal.length > 1 ? normal.replace(/\/+$/, '') : normal;
    };
    const userName = (name) => {
        const given = value(name);
        if (given && !/^[a-z_][a-z0-9_.-]*\$?$/i.test(given))
            fail(name, `'${given}' is not a user name.`);
        return given || undefined;
    };
    const password = (name) => {
        // A password is taken as given (spaces are legitimate); only a missing one means "the default".
        const given = raw[name];
        if (given === undefined || given === '')
            return undefined;
        if (/[\r\n\0]/.test(given))
            fail(name, 'the password contains a line break or NUL byte, which no database client accepts.');
        return given;
    };
    return { value, fail, oneOf, integer, boolean, absolutePath, userName, password };
}
/** Validates the inputs that say where the instance is (shared by backup and restore). */
function planInstance(raw, label = actionLabel) {
    const { value, fail, integer, absolutePath } = validators(raw, label);
    // --- Where the ownCloud server is -------------------------------------------------------
    const host = value(INPUTS.host);
    let target = { kind: 'local' };
    // Without a host there is no SSH connection: an SSH setting would be silently unused.
    if (host === '')
        for (const name of SSH_ONLY)
            if (value(name) !== '')
                fail(name, `it only applies with ${label(INPUTS.host)} (without a host, the server is this machine and there is no SSH connection).`);
    if (host !== '') {
        if (host.startsWith('-') || !/^[A-Za-z0-9._:[\]%_-]+$/.test(host))
            fail(INPUTS.host, `'${host}' is not a host name or IP address.`);
        const privateKey = (raw[INPUTS.sshKey] ?? '').replace(/\r\n/g, '\n').trim();
        if (privateKey === '')
            fail(INPUTS.sshKey, `a private key is required when ${label(INPUTS.host)} is set.`);
        if (!/^-----BEGIN [A-Z ]*PRIVATE KEY-----\n[\s\S]+\n-----END [A-Z ]*PRIVATE KEY-----$/.test(privateKey))
            fail(INPUTS.sshKey, 'expected a private key in PEM/OpenSSH format (-----BEGIN ... PRIVATE KEY-----).');
        if (/^Proc-Type: .*ENCRYPTED/m.test(privateKey) ||
            privateKey.includes('ENCRYPTED PRIVATE KEY') ||
            openSshKeyCipher(privateKey) !== 'none')
            fail(INPUTS.sshKey, 'the private key is protected by a passphrase; use a key without one.');
        const knownHosts = words(raw[INPUTS.knownHosts]);
        if (knownHosts.length === 0)
            fail(INPUTS.knownHosts, `known_hosts lines for the host are required when ${label(INPUTS.host)} is set (get them with: ssh-keyscan -p PORT HOST).`);
        knownHosts.forEach((line, index) => {
            const problem = knownHostsLineProblem(line);
            if (problem)
                fail(INPUTS.knownHosts, `line ${index + 1} ${problem}`);
        });
        const user = value(INPUTS.user) || 'root';
        if (!/^[a-z_][a-z0-9_.-]*\$?$/i.test(user))
            fail(INPUTS.user, `'${user}' is not a user name.`);
        target = {
            kind: 'ssh',
            host: host.replace(/^\[(.*)\]$/, '$1'),
            port: integer(INPUTS.port, 1, 65535) ?? 22,
            user,
            privateKey: `${privateKey}\n`,
            knownHosts,
        };
    }
    // --- The instance -------------------------------------------------------------------------
    const owncloudDir = absolutePath(INPUTS.owncloudDir, value(INPUTS.owncloudDir) || '/var/www/owncloud');
    const dataDir = value(INPUTS.dataDir)
        ? absolutePath(INPUTS.dataDir, value(INPUTS.dataDir))
        : undefined;
    // --- The database -------------------------------------------------------------------------
    const dbTypeGiven = value(INPUTS.dbType).toLowerCase();
    if (['oci', 'oracle'].includes(dbTypeGiven))
        fail(INPUTS.dbType, 'Oracle (oci) is not supported. Expected one of: auto, mysql, pgsql, sqlite.');
    const dbTypeAliases = {
        '': 'auto',
        auto: 'auto',
        mysql: 'mysql',
        mariadb: 'mysql',
        pgsql: 'pgsql',
        postgres: 'pgsql',
        postgresql: 'pgsql',
        sqlite: 'sqlite',
        sqlite3: 'sqlite',
    };
    const dbType = dbTypeAliases[dbTypeGiven];
    if (dbType === undefined)
        fail(INPUTS.dbType, `'${value(INPUTS.dbType)}' is not supported. Expected one of: auto, mysql, pgsql, sqlite.`);
    const database = {};
    if (dbType !== 'auto')
        database.type = dbType;
    if (value(INPUTS.dbHost))
        database.host = value(INPUTS.dbHost);
    const dbPort = integer(INPUTS.dbPort, 1, 65535);
    if (dbPort !== undefined)
        database.port = dbPort;
    if (value(INPUTS.dbName))
        database.name = value(INPUTS.dbName);
    if (value(INPUTS.dbUser))
        database.user = value(INPUTS.dbUser);
    const password = validators(raw, label).password(INPUTS.dbPassword);
    if (password !== undefined)
        database.password = password;
    const occUser = validators(raw, label).userName(INPUTS.occUser);
    const identityText = (raw[INPUTS.identity] ?? '').replace(/\r\n/g, '\n').trim();
    if (identityText !== '') {
        const problem = identityProblem(identityText) ??
            (openSshKeyCipher(identityText) !== 'none' || /^Proc-Type: .*ENCRYPTED/m.test(identityText)
                ? 'it is a passphrase-protected SSH key, which cannot be used unattended; give an age key, or an SSH key without a passphrase kept as a secret'
                : undefined);
        if (problem)
            fail(INPUTS.identity, `${problem}.`);
    }
    return {
        target,
        owncloudDir,
        ...(dataDir ? { dataDir } : {}),
        database,
        ...(occUser ? { occUser } : {}),
        ...(identityText ? { identity: `${identityText}\n` } : {}),
    };
}
/** Validates everything up front and returns the plan, or throws one InputError. */
function planBackup(raw, defaults, label = actionLabel) {
    const instance = planInstance(raw, label);
    const { value, fail, oneOf, integer, boolean, absolutePath } = validators(raw, label);
    // --- What to back up ----------------------------------------------------------------------
    const extraPaths = words(raw[INPUTS.extraPaths]).map((path) => {
        if (path.includes('\0'))
            fail(INPUTS.extraPaths, 'a path contains a NUL byte.');
        if (path.startsWith('-'))
            fail(INPUTS.extraPaths, `'${path}' starts with '-'. Expected a path.`);
        if ((0,external_node_path_namespaceObject.isAbsolute)(path))
            return absolutePath(INPUTS.extraPaths, path);
        const normal = (0,external_node_path_namespaceObject.normalize)(path).replace(/\/+$/, '');
        if (normal === '.' || normal === '..' || normal.startsWith('../'))
            fail(INPUTS.extraPaths, `'${path}' is not a path inside ${label(INPUTS.owncloudDir)}.`);
        return normal;
    });
    const exclude = words(raw[INPUTS.exclude]);
    for (const pattern of exclude)
        if (pattern.startsWith('-') || pattern.startsWith('+'))
            fail(INPUTS.exclude, `'${pattern}' starts with '${pattern[0]}'. Expected an rsync pattern such as '*/thumbnails/'.`);
    const installType = oneOf(INPUTS.installType, ['auto', 'package', 'tarball'], 'auto');
    const keep = (name) => {
        const given = value(name);
        if (given === '')
            return 0;
        if (!/^\d+$/.test(given) || !Number.isSafeInteger(Number(given)))
            fail(name, `'${given}' is not a whole number. Expected how many backups the rule keeps, 0 or more (0: the rule is off).`);
        return Number(given);
    };
    const retention = {
        last: keep(INPUTS.keepLast),
        daily: keep(INPUTS.keepDaily),
        weekly: keep(INPUTS.keepWeekly),
        monthly: keep(INPUTS.keepMonthly),
        yearly: keep(INPUTS.keepYearly),
    };
    const repository = planRestic(raw, defaults, label);
    return {
        ...instance,
        extraPaths,
        exclude,
        installType,
        maintenanceMode: boolean(INPUTS.maintenanceMode, true),
        compression: oneOf(INPUTS.compression, ['zstd', 'gzip'], 'zstd'),
        backupDir: absolutePath(INPUTS.backupDir, value(INPUTS.backupDir) || defaults.backupDir),
        dumpTimeoutSeconds: integer(INPUTS.dumpTimeout, 1, 7 * 24 * 3600) ?? 600,
        restoreTest: repository.restic
            ? false
            : boolean(INPUTS.restoreTest, defaults.restoreTest ?? false),
        ...(value(INPUTS.encryptTo) !== ''
            ? { encryptTo: parseRecipients(raw[INPUTS.encryptTo], label(INPUTS.encryptTo)) }
            : {}),
        retention,
        ...repository,
    };
}
/** Backend variables restic-env may not name: the repository and its password have inputs. */
const RESTIC_OWN = /^RESTIC_(PASSWORD|PASSWORD_FILE|PASSWORD_COMMAND|REPOSITORY|REPOSITORY_FILE)$/;
/** destination and the restic-* inputs: a ResticPlan for destination restic, else none. */
function planRestic(raw, defaults, label) {
    const { value, fail, oneOf, boolean } = validators(raw, label);
    // The action's backup is an artifact, the command line's a backup directory.
    const own = defaults.destination ?? 'directory';
    const destination = oneOf(INPUTS.destination, [own, 'restic'], own);
    const resticOnly = [
        INPUTS.resticRepository,
        INPUTS.resticPassword,
        INPUTS.resticEnv,
        INPUTS.resticOption,
        INPUTS.resticInit,
        INPUTS.check,
    ];
    if (destination === 'artifact')
        for (const name of KEEP_INPUTS)
            if (value(name) !== '' && value(name) !== '0')
                fail(name, `artifacts expire by retention-days; the keep-* inputs apply with ${label(INPUTS.destination)} restic.`);
    // The action's defaults (check none, restic-init false) say nothing was asked for.
    const asked = (name) => value(name) !== '' &&
        !(name === INPUTS.check && value(name).toLowerCase() === 'none') &&
        !(name === INPUTS.resticInit && value(name).toLowerCase() === 'false');
    if (destination !== 'restic') {
        for (const name of resticOnly)
            if (asked(name))
                fail(name, `it only applies with ${label(INPUTS.destination)} restic.`);
        return {};
    }
    const access = planResticAccess(raw, defaults.environment, label, 'destination restic');
    if (value(INPUTS.encryptTo) !== '')
        fail(INPUTS.encryptTo, 'a restic repository is encrypted by restic itself (restic-password); encrypt-to is for backup directories and artifacts.');
    return {
        restic: {
            ...access,
            init: boolean(INPUTS.resticInit, false),
            // The action's default is true: not an error, said in the log.
            restoreTestAsked: boolean(INPUTS.restoreTest, false),
            check: resticCheck(value(INPUTS.check), (message) => fail(INPUTS.check, message)),
        },
    };
}
/** The restic-repository, restic-password, restic-env and restic-option inputs. */
function planResticAccess(raw, environment, label, 
/** What needs them, for the messages: `destination restic`, `snapshot`. */
needs) {
    const { fail } = validators(raw, label);
    const repository = (raw[INPUTS.resticRepository] ?? '').trim();
    if (repository === '')
        fail(INPUTS.resticRepository, `a restic repository is needed with ${needs} (a path on the host, or sftp:, rest:, s3:, b2:, azure:, gs:, rclone:).`);
    if (/[\r\n\0]/.test(repository) || repository.startsWith('-'))
        fail(INPUTS.resticRepository, 'expected a restic repository string on one line.');
    const password = raw[INPUTS.resticPassword] ?? '';
    if (password === '')
        fail(INPUTS.resticPassword, `the repository password is needed with ${needs}.`);
    if (/[\r\n\0]/.test(password))
        fail(INPUTS.resticPassword, 'the password contains a line break or NUL byte.');
    const env = {};
    for (const name of words(raw[INPUTS.resticEnv]).flatMap((line) => line.split(/[\s,]+/))) {
        if (name === '')
            continue;
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
            fail(INPUTS.resticEnv, `'${name}' is not an environment variable name.`);
        if (RESTIC_OWN.test(name))
            fail(INPUTS.resticEnv, `${name} is given by ${label(INPUTS.resticRepository)} or ${label(INPUTS.resticPassword)}, not as a backend variable.`);
        const given = environment?.[name];
        if (given === undefined || given === '')
            fail(INPUTS.resticEnv, `the environment variable ${name} is not set (or empty).`);
        if (/[\r\n\0]/.test(given))
            fail(INPUTS.resticEnv, `the value of ${name} contains a line break or NUL byte.`);
        env[name] = given;
    }
    const options = words(raw[INPUTS.resticOption]);
    for (const option of options)
        if (!/^[^=\s-][^=\s]*=\S/.test(option))
            fail(INPUTS.resticOption, `'${option}' is not of the form key=value (e.g. sftp.connections=2).`);
    return { repository, password, env, options };
}
/** `none`, `metadata` or `read-data-subset=N%` (0 < N ≤ 100). Pure. */
function resticCheck(given, fail) {
    const text = given.trim().toLowerCase();
    if (text === '' || text === 'none')
        return { kind: 'none' };
    if (text === 'metadata')
        return { kind: 'metadata' };
    const subset = /^read-data-subset=(\d+(?:\.\d+)?)%$/.exec(text);
    if (subset && Number(subset[1]) > 0 && Number(subset[1]) <= 100)
        return { kind: 'read-data-subset', percent: Number(subset[1]) };
    return fail(`'${given}' is not supported. Expected none, metadata or read-data-subset=N% (N from 0 to 100, e.g. read-data-subset=5%).`);
}
/** Validates a restore's inputs up front; the backup path is the CLI's argument (or the download). */
function planRestore(raw, backupPath, label = actionLabel, 
/** The environment that restic-env's variable names are read from. */
environment) {
    const instance = planInstance(raw, label);
    const { value, fail, boolean, userName, password } = validators(raw, label);
    const repository = planRepositoryBackup(raw, backupPath, label, environment);
    const adminUser = value(INPUTS.dbAdminUser);
    const adminPassword = password(INPUTS.dbAdminPassword);
    if (adminUser === '' && adminPassword !== undefined)
        fail(INPUTS.dbAdminPassword, `it only applies with ${label(INPUTS.dbAdminUser)} (the account that may drop and create databases).`);
    if (adminUser.startsWith('-') || /[\0\r\n]/.test(adminUser))
        fail(INPUTS.dbAdminUser, `'${adminUser}' is not a database user name.`);
    const safetyCopy = boolean(INPUTS.safetyCopy, true);
    const discardPrevious = boolean(INPUTS.discardPrevious, false);
    if (!safetyCopy && discardPrevious)
        fail(INPUTS.discardPrevious, `it only applies with a safety copy (${label(INPUTS.safetyCopy)} is false: there is nothing to discard).`);
    const owner = userName(INPUTS.owner);
    return {
        ...instance,
        // Empty: the installation directory the backup recorded.
        owncloudDir: value(INPUTS.owncloudDir) ? instance.owncloudDir : '',
        backupPath,
        ...(repository ? { repository } : {}),
        ...(adminUser ? { dbAdmin: { user: adminUser, password: adminPassword ?? '' } } : {}),
        allowVersionMismatch: boolean(INPUTS.allowVersionMismatch, false),
        safetyCopy,
        discardPrevious,
        ...(owner ? { owner } : {}),
    };
}
/** The restic inputs that only reach a repository (a restore takes no init, check or keep-*). */
const RESTIC_ACCESS_INPUTS = [
    INPUTS.resticRepository,
    INPUTS.resticPassword,
    INPUTS.resticEnv,
    INPUTS.resticOption,
];
/** The snapshot input and how to reach its repository; none without snapshot. */
function planRepositoryBackup(raw, backupPath, label, environment) {
    const { value, fail } = validators(raw, label);
    const snapshot = value(INPUTS.snapshot);
    if (snapshot === '') {
        for (const name of RESTIC_ACCESS_INPUTS)
            if (value(name) !== '')
                fail(name, `it only applies with ${label(INPUTS.snapshot)} (a backup in a restic repository).`);
        return undefined;
    }
    if (backupPath !== '')
        fail(INPUTS.snapshot, 'a restore reads one backup: a backup directory, or a snapshot of a restic repository, not both.');
    if (!/^(latest|[0-9a-f]{4,64}|owncloud-backup-[0-9A-Za-z_-]+)$/.test(snapshot))
        fail(INPUTS.snapshot, `'${snapshot}' is not a snapshot. Expected latest, a snapshot id (at least its first 4 hex digits, as owncloud-backup list shows it) or a backup name (owncloud-backup-…).`);
    return {
        restic: planResticAccess(raw, environment, label, label(INPUTS.snapshot)),
        snapshot,
    };
}
/** Why a known_hosts line is malformed, or undefined when it is fine. */
function knownHostsLineProblem(line) {
    const fields = line.split(/\s+/);
    if (fields[0] === '@cert-authority' || fields[0] === '@revoked')
        fields.shift();
    const [hosts, keyType, key] = fields;
    if (!hosts || !keyType || !key)
        return `is not a known_hosts line. Expected 'HOST KEYTYPE BASE64KEY', e.g. '[cloud.example.com]:2222 ssh-ed25519 AAAA...'.`;
    if (!KEY_TYPES.has(keyType))
        return `has an unknown key type '${keyType}'.`;
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(key))
        return 'has a key that is not base64.';
    // The key blob starts with its own type name: a cheap check that it is really a key.
    const blob = Buffer.from(key, 'base64');
    const nameLength = blob.length >= 4 ? blob.readUInt32BE(0) : 0;
    if (nameLength === 0 || blob.subarray(4, 4 + nameLength).toString('latin1') !== keyType)
        return `has a key that is not a ${keyType} key.`;
    return undefined;
}
/**
 * The cipher an OpenSSH-format private key is encrypted with ('none' when it has no
 * passphrase, and for keys in other formats, which say so in their PEM headers).
 */
function openSshKeyCipher(privateKey) {
    const match = /-----BEGIN OPENSSH PRIVATE KEY-----\n([\s\S]+?)\n-----END OPENSSH PRIVATE KEY-----/.exec(privateKey);
    if (!match)
        return 'none';
    const blob = Buffer.from(match[1].replace(/\s+/g, ''), 'base64');
    const magic = 'openssh-key-v1\0';
    if (blob.subarray(0, magic.length).toString('latin1') !== magic || blob.length < magic.length + 4)
        return 'none';
    const length = blob.readUInt32BE(magic.length);
    return blob.subarray(magic.length + 4, magic.length + 4 + length).toString('latin1');
}
/** The areas of a user's home a single-path restore brings back. */
const USER_AREAS = ['files', 'files_versions', 'files_trashbin'];
/**
 * `USER/files/SOME/PATH` (or `USER/files_versions/...`, `USER/files_trashbin/...`) as a
 * user's path, or why it is not one. Pure.
 */
function userPath(given) {
    const text = given.replace(/^\/+/, '').replace(/\/+$/, '');
    if (/[\0\r\n]/.test(text))
        return 'it contains a NUL byte or a line break.';
    const parts = text.split('/');
    if (parts.some((p) => p === '' || p === '.' || p === '..'))
        return `'${given}' has an empty, '.' or '..' part. Expected USER/files/SOME/PATH.`;
    const [user, area] = parts;
    if (!user || !area || !USER_AREAS.includes(area))
        return `'${given}' is not a path in a user's files. Expected USER/files/SOME/PATH (or USER/files_versions/..., USER/files_trashbin/...).`;
    return { user, path: parts.slice(1).join('/'), area: area };
}
/** Validates a restore of single paths (restore --path). */
function planPathRestore(raw, backupPath, label = actionLabel) {
    const instance = planInstance(raw, label);
    const { value, fail, boolean } = validators(raw, label);
    // The action passes every input with its default: only a value that says more refuses.
    const defaults = {
        [INPUTS.safetyCopy]: 'true',
        [INPUTS.discardPrevious]: 'false',
        [INPUTS.allowVersionMismatch]: 'false',
    };
    for (const name of WHOLE_RESTORE_ONLY)
        if ((value(name) !== '' && value(name).toLowerCase() !== defaults[name]) ||
            (name === INPUTS.dbPassword && raw[name] !== undefined))
            fail(name, `it applies to a restore of the whole instance, not of single paths (${label(INPUTS.path)}): the database stays as it is.`);
    const paths = [];
    for (const line of (raw[INPUTS.path] ?? '').split('\n')) {
        if (line.trim() === '')
            continue;
        const parsed = userPath(line.replace(/\r$/, ''));
        if (typeof parsed === 'string')
            fail(INPUTS.path, parsed);
        else
            paths.push(parsed);
    }
    if (paths.length === 0)
        fail(INPUTS.path, 'no path given. Expected USER/files/SOME/PATH.');
    const asCopy = boolean(INPUTS.asCopy, false);
    const overwrite = boolean(INPUTS.overwrite, false);
    if (asCopy && overwrite)
        fail(INPUTS.overwrite, `it contradicts ${label(INPUTS.asCopy)} (a copy beside the current items replaces nothing).`);
    if (asCopy)
        for (const p of paths)
            if (p.area !== 'files')
                fail(INPUTS.asCopy, `it applies to paths in a user's files/ only; '${p.user}/${p.path}' is a ${p.area === 'files_versions' ? 'version' : 'trash bin entry'}, whose name ownCloud gives it.`);
    if (paths.some((p) => p.path === p.area && p.area === 'files' && asCopy))
        fail(INPUTS.asCopy, "a user's whole files/ cannot be restored as a copy; name a folder in it.");
    for (const a of paths)
        for (const b of paths)
            if (a !== b && a.user === b.user && (a.path === b.path || a.path.startsWith(`${b.path}/`)))
                fail(INPUTS.path, `'${a.user}/${a.path}' is ${a.path === b.path ? 'given twice' : `inside '${b.user}/${b.path}', which is given too`}.`);
    return {
        ...instance,
        owncloudDir: value(INPUTS.owncloudDir) ? instance.owncloudDir : '',
        backupPath,
        paths,
        conflicts: asCopy ? 'as-copy' : overwrite ? 'overwrite' : 'keep-newer',
    };
}

;// CONCATENATED MODULE: ./src/cli/main.ts
// `owncloud-backup`: the same engine as the action, from a shell. Options carry the
// action's input names; secrets come from the environment or files, never from a
// command-line value (which every user of the machine can read in the process list).




















const EXIT = { ok: 0, failed: 1, usage: 2, skipped: 3, interrupted: 130 };
const ENV = {
    dbPassword: 'OWNCLOUD_BACKUP_DB_PASSWORD',
    dbAdminPassword: 'OWNCLOUD_BACKUP_DB_ADMIN_PASSWORD',
    sshKey: 'OWNCLOUD_BACKUP_SSH_KEY',
    identity: 'OWNCLOUD_BACKUP_IDENTITY',
    resticRepository: 'OWNCLOUD_BACKUP_RESTIC_REPOSITORY',
    resticPassword: 'OWNCLOUD_BACKUP_RESTIC_PASSWORD',
};
const USAGE = `Usage: owncloud-backup backup [options]
       owncloud-backup backup --destination restic --restic-repository REPO [options]
       owncloud-backup list --restic-repository REPO [options]
       owncloud-backup verify [--restore-test] [--identity-file FILE] BACKUP-DIR
       owncloud-backup restore BACKUP-DIR [options]
       owncloud-backup restore --snapshot ID|latest --restic-repository REPO [options]
       owncloud-backup restore BACKUP-DIR --path USER/files/PATH [--path ...] [options]
       owncloud-backup restore BACKUP-DIR --list USER/files/DIR
       owncloud-backup restore --cleanup [options]
       owncloud-backup --help | --version

Backs up an ownCloud (or Nextcloud) server: config/, the data directory, the database and
custom themes, into a dated directory holding compressed archives and manifest.json.

Where the server is (no --host: this machine):
  --host HOST              SSH host of the ownCloud server
  --port N                 SSH port (22)
  --user NAME              SSH user (root)
  --ssh-key-file FILE      private key (or env ${ENV.sshKey} holding the key)
  --known-hosts LINE       known_hosts line for the host (repeatable)
  --known-hosts-file FILE  known_hosts lines for the host
What to back up:
  --owncloud-dir DIR       installation directory (/var/www/owncloud)
  --data-dir DIR           data directory (config.php's datadirectory)
  --extra-paths PATH       more paths, relative to owncloud-dir or absolute (repeatable)
  --exclude PATTERN        rsync pattern to leave out, e.g. '*/thumbnails/' (repeatable)
  --install-type TYPE      auto (default: package if a dpkg/rpm package owns occ), package
                           (server code is not copied, app-store apps are) or tarball
The database (each defaults to config.php's value):
  --db-type TYPE           auto, mysql, pgsql or sqlite
  --db-host HOST  --db-port N  --db-name NAME  --db-user USER
  --db-password-file FILE  password (or env ${ENV.dbPassword})
Behaviour:
  --maintenance-mode BOOL  switch maintenance mode on for the dump (true)
  --occ-user USER          who runs occ (the owner of config.php)
  --compression TYPE       zstd (default) or gzip
  --backup-dir DIR         where the dated backup directory is written (.)
  --dump-timeout SECONDS   give up on a dump silent this long (600)
  --ssh-keepalive SECONDS  SSH keepalive interval; 3 missed end the link (5)
  --restore-test BOOL      after writing the backup, load its dump into a throwaway
                           database server on this machine and compare every table's rows
                           with the counts taken in the maintenance window; check the files
                           archive for config.php, the data marker and every user's files/
                           (false here: the command line often runs on the ownCloud server
                           itself; the action's default is true). A mismatch fails the backup
Encryption at rest (age, on this machine):
  --encrypt-to RECIPIENT   encrypt every archive and the dump to this recipient as they are
                           written: an age public key ('age1…') or an SSH public key
                           ('ssh-ed25519 …', 'ssh-rsa …'); repeatable. Needs the age tool
  --identity-file FILE     the secret key that decrypts an encrypted backup, for restore,
                           verify and the restore test (or env ${ENV.identity}
                           holding the key)
Retention (after a successful backup, the complete dated backups in --backup-dir that no
rule keeps are removed; restic's forget rules; days, weeks, months and years in UTC, as the
backup names; no --keep-* option: nothing is ever removed; 0: the rule is off):
  --keep-last N            the N newest backups
  --keep-daily N           for the N newest days with backups, the newest of each day
  --keep-weekly N          likewise for ISO weeks (Monday to Sunday)
  --keep-monthly N         likewise for months
  --keep-yearly N          likewise for years
                           The backup just written is always kept; other files and
                           directories in --backup-dir are never touched
Into a restic repository instead of --backup-dir (restic runs on the ownCloud server, which
reads the files in place: no file crosses this machine; the dump passes through it):
  --destination TYPE       directory (default) or restic
  --restic-repository REPO any restic repository as seen from the server: a path, sftp:,
                           rest:, s3:, b2:, azure:, gs:, rclone: (or env
                           ${ENV.resticRepository}, for one holding credentials)
  --restic-password-file FILE  the repository password (or env ${ENV.resticPassword})
  --restic-env NAME        a backend variable (AWS_ACCESS_KEY_ID, …) to pass to restic with
                           the value it has here; repeatable
  --restic-option KEY=VAL  a restic extended option (-o), e.g. sftp.connections=2; repeatable
  --restic-init            create the repository when there is none yet
  --check MODE             after the backup: none (default), metadata (restic check) or
                           read-data-subset=N% (also reads N% of the data)
                           The --keep-* options apply to the instance's backups in the
                           repository (every snapshot of a removed backup, then prune)
  list shows the complete backups in the repository: name, manifest snapshot, date, instance,
  version, database type and size.
  restore --snapshot ID|latest restores one of them (a snapshot id or its first digits, a
  backup name, or latest) with restic on the target server, which must reach the
  repository: the files go from the repository onto the server, restic reads each back
  (--verify); the dump passes through this machine into the database client
  env ${SERVER_DIRS_ENV}  where to look for the server programs
                           after PATH (':'-separated), instead of /usr/sbin,
                           /usr/lib/postgresql/*/bin and the like
  env ${PROGRESS_ENV}  seconds between progress lines of the copy and archive (10)
Restore (the same options say where the server is; --owncloud-dir and --data-dir default
to the paths the backup recorded, the --db-* options replace config.php's values):
  --db-admin-user USER     account that may drop and create databases (and the instance's
                           user); without it the instance's user empties its database
  --db-admin-password-file FILE  its password (or env ${ENV.dbAdminPassword})
  --safety-copy BOOL       move the current state aside first, to put it back if the
                           restore fails (true); false for a new, empty host
  --discard-previous       remove the moved-aside state once the restore succeeded
  --cleanup                remove the state earlier restores moved aside, and exit
  --owner USER             owner of the restored files when the archive's owners do not
                           exist on the target (the owner of the installation directory)
  --allow-version-mismatch restore onto server code of another version (package installs)
Restore of single files and folders into the running instance (no maintenance mode, the
database stays; encryption keys and file cache values come back with encrypted files):
  --path USER/files/PATH   a file or folder as the user sees it (repeatable); also
                           USER/files_versions/... and USER/files_trashbin/...
  --as-copy                put restored items beside the current ones, named
                           'NAME (restored DATE)', DATE the backup's
  --overwrite              replace current files even when they are newer than the
                           backup's (without it, newer files are skipped and named)
  --list USER/files/DIR    show what the backup holds there (size, mtime, name), and exit
Other:
  -h, --help               show this help
  --version                show the version

verify checks a backup directory from its manifest alone: sizes, SHA-256, complete
decompression, the dump's completion line, and the files archive's listing to its end.
With --restore-test it then runs the restore test on it (see --restore-test above).

restore verifies the backup first (every byte), checks the target before changing it, and
puts the previous state back (files, database, maintenance mode) if any step fails.

Exit status of restore: 0 restored, 1 failed (the message says in which state the instance
is), 2 bad usage or input, 130 interrupted (the previous state is put back first).
Exit status of backup: 0 done, 1 the backup failed, 2 bad usage or input, 130 interrupted.
Exit status of verify: 0 intact (and, with --restore-test, the restore test passed),
1 damaged, missing or unreadable (not a backup that checks out) or the restore test failed,
2 bad usage, 3 intact as far as it could be checked: the restore test was skipped (no server
programs on this machine), or the backup is encrypted and no identity was given (only the
files' sizes and SHA-256 were checked), 130 interrupted.`;
const OPTIONS = {
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean' },
    host: { type: 'string' },
    port: { type: 'string' },
    user: { type: 'string' },
    'ssh-key': { type: 'string' },
    'ssh-key-file': { type: 'string' },
    'known-hosts': { type: 'string', multiple: true },
    'known-hosts-file': { type: 'string' },
    'owncloud-dir': { type: 'string' },
    'data-dir': { type: 'string' },
    'extra-paths': { type: 'string', multiple: true },
    exclude: { type: 'string', multiple: true },
    'install-type': { type: 'string' },
    'db-type': { type: 'string' },
    'db-host': { type: 'string' },
    'db-port': { type: 'string' },
    'db-name': { type: 'string' },
    'db-user': { type: 'string' },
    'db-password': { type: 'string' },
    'db-password-file': { type: 'string' },
    'maintenance-mode': { type: 'string' },
    'occ-user': { type: 'string' },
    compression: { type: 'string' },
    'backup-dir': { type: 'string' },
    'dump-timeout': { type: 'string' },
    'restore-test': { type: 'string' },
    'keep-last': { type: 'string' },
    'keep-daily': { type: 'string' },
    'keep-weekly': { type: 'string' },
    'keep-monthly': { type: 'string' },
    'keep-yearly': { type: 'string' },
    'ssh-keepalive': { type: 'string' },
    'db-admin-user': { type: 'string' },
    'db-admin-password': { type: 'string' },
    'db-admin-password-file': { type: 'string' },
    'safety-copy': { type: 'string' },
    'discard-previous': { type: 'boolean' },
    cleanup: { type: 'boolean' },
    owner: { type: 'string' },
    'allow-version-mismatch': { type: 'boolean' },
    path: { type: 'string', multiple: true },
    'as-copy': { type: 'boolean' },
    overwrite: { type: 'boolean' },
    list: { type: 'string' },
    'encrypt-to': { type: 'string', multiple: true },
    identity: { type: 'string' },
    'identity-file': { type: 'string' },
    destination: { type: 'string' },
    'restic-repository': { type: 'string' },
    'restic-password': { type: 'string' },
    'restic-password-file': { type: 'string' },
    'restic-env': { type: 'string', multiple: true },
    'restic-option': { type: 'string', multiple: true },
    'restic-init': { type: 'boolean' },
    check: { type: 'string' },
    snapshot: { type: 'string' },
};
/** Options that mean something for one command only. */
const ONLY_FOR = {
    destination: 'backup',
    'restic-init': 'backup',
    check: 'backup',
    'restic-repository': 'backup or list or restore',
    'restic-password-file': 'backup or list or restore',
    'restic-env': 'backup or list or restore',
    'restic-option': 'backup or list or restore',
    snapshot: 'restore',
    'extra-paths': 'backup',
    exclude: 'backup',
    'install-type': 'backup',
    'maintenance-mode': 'backup',
    compression: 'backup',
    'backup-dir': 'backup',
    'dump-timeout': 'backup',
    'restore-test': 'backup',
    'encrypt-to': 'backup',
    'keep-last': 'backup',
    'keep-daily': 'backup',
    'keep-weekly': 'backup',
    'keep-monthly': 'backup',
    'keep-yearly': 'backup',
    'db-admin-user': 'restore',
    'db-admin-password-file': 'restore',
    'safety-copy': 'restore',
    'discard-previous': 'restore',
    cleanup: 'restore',
    owner: 'restore',
    'allow-version-mismatch': 'restore',
    path: 'restore',
    'as-copy': 'restore',
    overwrite: 'restore',
    list: 'restore',
};
function readSecretFile(option, path) {
    try {
        return (0,external_node_fs_namespaceObject.readFileSync)(path, 'utf8');
    }
    catch (error) {
        throw new InputError(`Cannot read ${option} '${path}': ${error.code ?? String(error)}.`);
    }
}
/** The age identity, from --identity-file or the environment, and where it came from. */
function identityFrom(file, env) {
    if (file)
        return { text: readSecretFile('--identity-file', file), source: 'option --identity-file' };
    if (env[ENV.identity])
        return { text: env[ENV.identity], source: `environment variable ${ENV.identity}` };
    return undefined;
}
/**
 * How an input is named in an error: as the option (or environment variable) the user
 * actually gave it with, e.g. --ssh-key-file for the input ssh-key.
 */
function labelFromSources(sources) {
    return (name) => sources[name] ?? cliLabel(name);
}
/** Turns argv and the environment into the same raw inputs the action reads. */
function cliInputs(args, env, cwd = process.cwd()) {
    let parsed;
    try {
        parsed = (0,external_node_util_namespaceObject.parseArgs)({ args, options: OPTIONS, allowPositionals: true, strict: true });
    }
    catch (error) {
        throw new InputError(`${error.message.split('\n')[0]} (see owncloud-backup --help)`);
    }
    const { values, positionals } = parsed;
    const command = positionals[0];
    if (command !== 'backup' && command !== 'restore' && command !== 'list')
        throw new InputError(`Expected the command 'backup', 'restore', 'list' or 'verify', got '${positionals.join(' ')}' (see owncloud-backup --help).`);
    for (const [option, only] of Object.entries(ONLY_FOR))
        if (!only.split(' or ').includes(command) &&
            values[option] !== undefined)
            throw new InputError(`Option --${option} only applies to ${only} (see owncloud-backup --help).`);
    let backupPath;
    if ((command === 'backup' || command === 'list') && positionals.length !== 1)
        throw new InputError(`Unexpected argument '${positionals.slice(1).join(' ')}' after '${command}' (see owncloud-backup --help).`);
    if (command === 'restore') {
        if (values.cleanup && positionals.length !== 1)
            throw new InputError('restore --cleanup takes no BACKUP-DIR: it removes what earlier restores moved aside.');
        if (values.snapshot !== undefined && positionals.length !== 1)
            throw new InputError(`restore --snapshot takes no BACKUP-DIR ('${positionals.slice(1).join(' ')}'): the backup is the repository's snapshot.`);
        if (values.snapshot !== undefined &&
            (values.cleanup || values.path || values.list !== undefined))
            throw new InputError(`Option --snapshot restores a whole instance from a restic repository: it does not go with ${values.cleanup ? '--cleanup' : values.path ? '--path (not available from a repository yet: restore the file with restic restore by hand, as the README shows)' : '--list'}.`);
        if (!values.cleanup && values.snapshot === undefined && positionals.length !== 2)
            throw new InputError('Expected: owncloud-backup restore BACKUP-DIR [options], or restore --snapshot ID|latest --restic-repository REPO (see owncloud-backup --help).');
        if (positionals[1] !== undefined)
            backupPath = (0,external_node_path_namespaceObject.resolve)(cwd, positionals[1]);
    }
    if (values['db-admin-password'] !== undefined)
        throw new InputError(`Refusing --db-admin-password: a password on the command line is visible to every user of this machine. Use the environment variable ${ENV.dbAdminPassword} or --db-admin-password-file.`);
    if (values['db-password'] !== undefined)
        throw new InputError(`Refusing --db-password: a password on the command line is visible to every user of this machine. Use the environment variable ${ENV.dbPassword} or --db-password-file.`);
    if (values['ssh-key'] !== undefined)
        throw new InputError(`Refusing --ssh-key: pass the key as a file (--ssh-key-file) or in ${ENV.sshKey}.`);
    if (values['restic-password'] !== undefined)
        throw new InputError(`Refusing --restic-password: a password on the command line is visible to every user of this machine. Use the environment variable ${ENV.resticPassword} or --restic-password-file.`);
    if (values.identity !== undefined)
        throw new InputError(`Refusing --identity: a secret key on the command line is visible to every user of this machine. Pass it as a file (--identity-file) or in ${ENV.identity}.`);
    const raw = {};
    const plain = [
        INPUTS.host,
        INPUTS.port,
        INPUTS.user,
        INPUTS.owncloudDir,
        INPUTS.dataDir,
        INPUTS.installType,
        INPUTS.dbType,
        INPUTS.dbHost,
        INPUTS.dbPort,
        INPUTS.dbName,
        INPUTS.dbUser,
        INPUTS.maintenanceMode,
        INPUTS.occUser,
        INPUTS.compression,
        INPUTS.backupDir,
        INPUTS.dumpTimeout,
        INPUTS.restoreTest,
        ...KEEP_INPUTS,
        INPUTS.dbAdminUser,
        INPUTS.safetyCopy,
        INPUTS.owner,
    ];
    for (const name of plain) {
        const value = values[name];
        if (typeof value === 'string')
            raw[name] = value;
    }
    if (values['discard-previous'])
        raw[INPUTS.discardPrevious] = 'true';
    if (values.path)
        raw[INPUTS.path] = values.path.join('\n');
    if (values['as-copy'])
        raw[INPUTS.asCopy] = 'true';
    if (values.overwrite)
        raw[INPUTS.overwrite] = 'true';
    if (values.list !== undefined && (values.path || values.cleanup))
        throw new InputError(`Option --list shows what a backup holds and restores nothing: it does not go with ${values.path ? '--path' : '--cleanup'}.`);
    if (values.cleanup && values.path)
        throw new InputError('Option --cleanup does not go with --path (see owncloud-backup --help).');
    if (values['allow-version-mismatch'])
        raw[INPUTS.allowVersionMismatch] = 'true';
    // A relative backup-dir (the help's default is `.`) is taken from the working directory.
    const backupDir = raw[INPUTS.backupDir]?.trim() || '.';
    if (command === 'backup')
        raw[INPUTS.backupDir] =
            backupDir.startsWith('-') || backupDir.includes('\0') ? backupDir : (0,external_node_path_namespaceObject.resolve)(cwd, backupDir);
    if (values['extra-paths'])
        raw[INPUTS.extraPaths] = values['extra-paths'].join('\n');
    if (values.exclude)
        raw[INPUTS.exclude] = values.exclude.join('\n');
    if (values['encrypt-to'])
        raw[INPUTS.encryptTo] = values['encrypt-to'].join('\n');
    if (command === 'list')
        raw[INPUTS.destination] = 'restic';
    else if (values.destination !== undefined)
        raw[INPUTS.destination] = values.destination;
    if (values['restic-env'])
        raw[INPUTS.resticEnv] = values['restic-env'].join('\n');
    if (values['restic-option'])
        raw[INPUTS.resticOption] = values['restic-option'].join('\n');
    if (values['restic-init'])
        raw[INPUTS.resticInit] = 'true';
    if (values.check !== undefined)
        raw[INPUTS.check] = values.check;
    if (values.snapshot !== undefined)
        raw[INPUTS.snapshot] = values.snapshot;
    const sources = {
        [INPUTS.sshKey]: `option --ssh-key-file (or environment variable ${ENV.sshKey})`,
        [INPUTS.knownHosts]: 'option --known-hosts (or --known-hosts-file)',
    };
    const knownHosts = [...(values['known-hosts'] ?? [])];
    if (values['known-hosts-file']) {
        knownHosts.push(readSecretFile('--known-hosts-file', values['known-hosts-file']));
        sources[INPUTS.knownHosts] = values['known-hosts']
            ? 'options --known-hosts and --known-hosts-file'
            : 'option --known-hosts-file';
    }
    else if (values['known-hosts'])
        sources[INPUTS.knownHosts] = 'option --known-hosts';
    if (knownHosts.length > 0)
        raw[INPUTS.knownHosts] = knownHosts.join('\n');
    if (values['ssh-key-file']) {
        raw[INPUTS.sshKey] = readSecretFile('--ssh-key-file', values['ssh-key-file']);
        sources[INPUTS.sshKey] = 'option --ssh-key-file';
    }
    else if (env[ENV.sshKey]) {
        raw[INPUTS.sshKey] = env[ENV.sshKey];
        sources[INPUTS.sshKey] = `environment variable ${ENV.sshKey}`;
    }
    const identity = identityFrom(values['identity-file'], env);
    if (identity) {
        raw[INPUTS.identity] = identity.text;
        sources[INPUTS.identity] = identity.source;
    }
    if (values['db-password-file']) {
        raw[INPUTS.dbPassword] = readSecretFile('--db-password-file', values['db-password-file']).replace(/\r?\n$/, '');
        sources[INPUTS.dbPassword] = 'option --db-password-file';
    }
    else if (env[ENV.dbPassword] !== undefined) {
        raw[INPUTS.dbPassword] = env[ENV.dbPassword];
        sources[INPUTS.dbPassword] = `environment variable ${ENV.dbPassword}`;
    }
    const restic = command === 'list' ||
        raw[INPUTS.destination]?.trim().toLowerCase() === 'restic' ||
        (command === 'restore' && values.snapshot !== undefined);
    if (values['restic-repository'] !== undefined) {
        if (repositoryUrlPassword(values['restic-repository']) !== undefined)
            throw new InputError(`Refusing --restic-repository with a password in its URL: the command line is visible to every user of this machine. Put the repository in the environment variable ${ENV.resticRepository}.`);
        raw[INPUTS.resticRepository] = values['restic-repository'];
        sources[INPUTS.resticRepository] = 'option --restic-repository';
    }
    else if (restic && env[ENV.resticRepository]) {
        raw[INPUTS.resticRepository] = env[ENV.resticRepository];
        sources[INPUTS.resticRepository] = `environment variable ${ENV.resticRepository}`;
    }
    if (values['restic-password-file']) {
        raw[INPUTS.resticPassword] = readSecretFile('--restic-password-file', values['restic-password-file']).replace(/\r?\n$/, '');
        sources[INPUTS.resticPassword] = 'option --restic-password-file';
    }
    else if (restic && env[ENV.resticPassword] !== undefined) {
        raw[INPUTS.resticPassword] = env[ENV.resticPassword];
        sources[INPUTS.resticPassword] = `environment variable ${ENV.resticPassword}`;
    }
    else
        sources[INPUTS.resticPassword] =
            `option --restic-password-file (or environment variable ${ENV.resticPassword})`;
    if (values['db-admin-password-file']) {
        raw[INPUTS.dbAdminPassword] = readSecretFile('--db-admin-password-file', values['db-admin-password-file']).replace(/\r?\n$/, '');
        sources[INPUTS.dbAdminPassword] = 'option --db-admin-password-file';
    }
    else if (command === 'restore' && env[ENV.dbAdminPassword] !== undefined) {
        raw[INPUTS.dbAdminPassword] = env[ENV.dbAdminPassword];
        sources[INPUTS.dbAdminPassword] = `environment variable ${ENV.dbAdminPassword}`;
    }
    let keepAliveSeconds;
    if (values['ssh-keepalive'] !== undefined) {
        if (!values.host)
            throw new InputError('Invalid option --ssh-keepalive: it only applies with option --host (without a host, the server is this machine and there is no SSH connection).');
        if (!/^\d+$/.test(values['ssh-keepalive']) || Number(values['ssh-keepalive']) < 1)
            throw new InputError(`Invalid option --ssh-keepalive: '${values['ssh-keepalive']}' is not a whole number of seconds (1 or more).`);
        keepAliveSeconds = Number(values['ssh-keepalive']);
    }
    return {
        command,
        raw,
        label: labelFromSources(sources),
        ...(keepAliveSeconds ? { keepAliveSeconds } : {}),
        ...(backupPath ? { backupPath } : {}),
        ...(values.cleanup ? { cleanup: true } : {}),
        ...(values.list !== undefined ? { list: values.list } : {}),
    };
}
function summary(result) {
    const { manifest } = result;
    const product = manifest.instance.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud';
    const width = Math.max(...manifest.archives.map((a) => a.name.length));
    const lines = [
        `Backup complete: ${result.directory}`,
        `  ${product} ${manifest.instance.version} (instance ${manifest.instance.instanceId}) from ${manifest.source.host}, ${manifest.source.installType} install (${manifest.source.installTypeReason})`,
        `  database ${manifest.database.type} '${manifest.database.name}', dumped with ${manifest.database.dumpTool} (${manifest.database.dumpToolVersion})`,
        ...manifest.archives.map((a) => `  ${a.name.padEnd(width)}  ${formatBytes(a.size).padStart(10)}  sha256 ${a.sha256}`),
        `  manifest.json, SHA256SUMS`,
        ...(manifest.encryption
            ? [`  server-side encryption: ${describeEncryption(manifest.encryption)}`]
            : []),
        `  ${manifest.files.fileCount} files (${formatBytes(manifest.files.bytes)}) from ${Object.values(manifest.files.layout).join(', ')}`,
        ...leftOutOf(manifest).map((item) => `  left out: ${item.what.replaceAll('`', '')}${item.why ? ` (${item.why})` : ''}`),
        `  maintenance mode: ${manifest.maintenance.managed ? (manifest.maintenance.switchedByUs ? `on for ${formatSeconds(manifest.maintenance.seconds)}, then off again` : 'was on already, left on') : 'not managed (disabled by option)'}`,
        ...(manifest.restoreTest ? [`  ${restoreTestLine(manifest.restoreTest)}`] : []),
        ...(result.retention ? retentionLines(result.retention) : []),
        `  took ${formatSeconds(manifest.durationSeconds)}`,
    ];
    return `${lines.join('\n')}\n`;
}
function resticSummary(result) {
    const { manifest } = result;
    const product = manifest.instance.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud';
    const lines = [
        `Backup complete: ${result.name} in the restic repository ${manifest.repository.display}`,
        `  ${product} ${manifest.instance.version} (instance ${manifest.instance.instanceId}) from ${manifest.source.host}`,
        `  manifest snapshot ${result.snapshot}; installation snapshot ${manifest.snapshots.install}; data snapshot ${manifest.snapshots.files}; database snapshot ${manifest.snapshots.database} (${manifest.database.dumpFile})${manifest.snapshots.encryptionIndex ? `; encryption index snapshot ${manifest.snapshots.encryptionIndex}` : ''}`,
        `  database ${manifest.database.type} '${manifest.database.name}', dumped with ${manifest.database.dumpTool} (${manifest.database.dumpToolVersion}), ${formatBytes(manifest.database.dumpBytes)}`,
        `  ${formatBytes(manifest.files.bytes)} of files; ${formatBytes(manifest.dataAdded)} added to the repository`,
        `  maintenance mode: ${manifest.maintenance.managed ? (manifest.maintenance.switchedByUs ? `on for ${formatSeconds(manifest.maintenance.seconds)}, then off again` : 'was on already, left on') : 'not managed (disabled by option)'}`,
        ...(result.retention
            ? [
                `  retention: kept ${result.retention.kept.length}, removed ${result.retention.removed.length}`,
                ...result.retention.removed.map((name) => `    removed ${name}`),
            ]
            : []),
        ...(result.checked ? [`  ${result.checked}: no errors`] : []),
    ];
    return `${lines.join('\n')}\n`;
}
function listText(backups) {
    if (backups.length === 0)
        return 'No complete backups in the repository.\n';
    const rows = backups.map((b) => [
        b.name,
        b.snapshot.slice(0, 8),
        b.time.replace(/\.\d+/, ''),
        b.instance,
        b.version,
        b.db,
        formatBytes(b.bytes),
    ]);
    const head = ['BACKUP', 'SNAPSHOT', 'TIME', 'INSTANCE', 'VERSION', 'DB', 'SIZE'];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    return `${[head, ...rows]
        .map((r) => r
        .map((c, i) => c.padEnd(widths[i]))
        .join('  ')
        .trimEnd())
        .join('\n')}\n`;
}
function retentionLines(retention) {
    const { kept, removed, failed } = retention;
    return [
        `  retention (${describePolicy(retention.policy)}; UTC): kept ${kept.length}, removed ${removed.length}${failed.length ? `, ${failed.length} not kept could not be removed` : ''}`,
        ...removed.map((r) => `    removed ${r.name}`),
        ...failed.map((f) => `    not removed (${f.error.replace(/\.$/, '')}): ${f.remains}`),
    ];
}
function restoreSummary(result) {
    const { manifest } = result;
    const product = manifest.instance.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud';
    const lines = [
        `Restore complete: ${manifest.name} onto ${result.target} (${result.inPlace ? 'in place' : 'a new host'})`,
        `  ${product} ${manifest.instance.version} (instance ${manifest.instance.instanceId}), backed up ${manifest.startedAt} from ${manifest.source.host}`,
        `  ${manifest.files.fileCount} files (${formatBytes(manifest.files.bytes)}); database ${manifest.database.type} '${manifest.database.name}'${result.tablesChecked ? `, ${result.tablesChecked} tables with the recorded row counts` : ''}`,
        ...(result.changedConfig.length
            ? [`  config.php changed: ${result.changedConfig.join(', ')}`]
            : []),
        `  maintenance mode ${manifest.maintenance.priorState ? 'on (as before the backup)' : 'off'}; data fingerprint renewed`,
        result.previous
            ? `  previous state kept in ${result.previous.paths.join(', ')} (${formatBytes(result.previous.bytes)}): owncloud-backup restore --cleanup removes it`
            : '  no previous state kept',
        `  took ${formatSeconds(result.seconds)}`,
    ];
    return `${lines.join('\n')}\n`;
}
async function runCli(args) {
    if (args.includes('--help') || args.includes('-h') || args.length === 0) {
        process.stdout.write(`${USAGE}\n`);
        return args.length === 0 ? EXIT.usage : EXIT.ok;
    }
    if (args.includes('--version')) {
        process.stdout.write(`${TOOL.name} ${TOOL.version}\n`);
        return EXIT.ok;
    }
    if (args[0] === 'verify')
        return verify(args.slice(1));
    const secrets = new Secrets();
    const reporter = streamReporter((text) => process.stderr.write(text), (text) => secrets.redact(text));
    const controller = new AbortController();
    let signals = 0;
    let restoring = false;
    const onSignal = (signal) => {
        signals++;
        if (signals === 1) {
            reporter.warning(restoring === 'paths'
                ? `${signal}: stopping after the current step (files being put in place are all placed, or none).`
                : restoring
                    ? `${signal}: stopping; the previous state is put back before exiting.`
                    : `${signal}: stopping; maintenance mode is restored before exiting.`);
            controller.abort();
        }
        else if (signals === 2) {
            reporter.warning(restoring
                ? `${signal} again: still putting the previous state back. A third one exits at once and may leave the instance half restored.`
                : `${signal} again: still restoring maintenance mode. A third one exits at once and may leave it on.`);
        }
        else {
            process.exit(EXIT.interrupted);
        }
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
        const inputs = cliInputs(args, process.env);
        const { raw, label, keepAliveSeconds } = inputs;
        secrets.add(raw[INPUTS.dbPassword]);
        secrets.add(raw[INPUTS.sshKey]);
        secrets.add(raw[INPUTS.dbAdminPassword]);
        secrets.add(raw[INPUTS.identity]);
        secrets.add(raw[INPUTS.resticPassword]);
        if (inputs.command === 'list' || raw[INPUTS.destination]?.trim().toLowerCase() === 'restic') {
            const planned = planBackup(raw, { backupDir: process.cwd(), environment: process.env }, label);
            for (const value of resticSecretValues(planned.restic))
                secrets.add(value);
            const ssh = keepAliveSeconds ? { ssh: { keepAliveSeconds } } : {};
            if (inputs.command === 'list') {
                const listed = await listResticBackups(planned, { reporter, secrets, ...ssh });
                process.stdout.write(listText(listed));
                return EXIT.ok;
            }
            const result = await runResticBackup(planned, {
                reporter,
                secrets,
                signal: controller.signal,
                progressSeconds: progressSecondsFrom(process.env),
                ...ssh,
            });
            process.stdout.write(resticSummary(result));
            return EXIT.ok;
        }
        if (inputs.command === 'restore' && inputs.list !== undefined)
            return await listPath(inputs.backupPath, inputs.list, planInstance(raw, label).identity);
        if (inputs.command === 'restore' && raw[INPUTS.path] !== undefined) {
            restoring = 'paths';
            const plan = planPathRestore(raw, inputs.backupPath, label);
            const result = await runPathRestore(plan, {
                reporter,
                secrets,
                signal: controller.signal,
                ...(keepAliveSeconds ? { ssh: { keepAliveSeconds } } : {}),
            });
            process.stdout.write(pathRestoreSummary(result));
            return EXIT.ok;
        }
        if (inputs.command === 'restore') {
            restoring = 'instance';
            const plan = planRestore(raw, inputs.backupPath ?? '', label, process.env);
            if (plan.repository)
                for (const value of resticSecretValues(plan.repository.restic))
                    secrets.add(value);
            const ssh = keepAliveSeconds ? { ssh: { keepAliveSeconds } } : {};
            if (inputs.cleanup) {
                const paths = [
                    plan.owncloudDir || '/var/www/owncloud',
                    ...(plan.dataDir ? [plan.dataDir] : []),
                ];
                const cleaned = await cleanupPrevious(plan, { reporter, secrets, ...ssh }, paths);
                process.stdout.write(cleaned.removed.length === 0
                    ? 'No previous state of an earlier restore found.\n'
                    : `Removed ${cleaned.removed.join(', ')} (${formatBytes(cleaned.bytes)}).\n`);
                return EXIT.ok;
            }
            const result = await runRestore(plan, {
                reporter,
                secrets,
                signal: controller.signal,
                progressSeconds: progressSecondsFrom(process.env),
                ...ssh,
            });
            process.stdout.write(restoreSummary(result));
            return EXIT.ok;
        }
        const plan = planBackup(raw, { backupDir: process.cwd() }, label);
        const result = await runBackup(plan, {
            reporter,
            secrets,
            signal: controller.signal,
            progressSeconds: progressSecondsFrom(process.env),
            ...(keepAliveSeconds ? { ssh: { keepAliveSeconds } } : {}),
        });
        process.stdout.write(summary(result));
        return EXIT.ok;
    }
    catch (error) {
        process.stderr.write(`owncloud-backup: error: ${secrets.redact(describeError(error))}\n`);
        if (error instanceof InputError)
            return EXIT.usage;
        if (error instanceof InterruptedError || controller.signal.aborted)
            return EXIT.interrupted;
        return EXIT.failed;
    }
    finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
    }
}
/** `restore BACKUP-DIR --list USER/files/DIR`: size, mtime (UTC) and name, one a line. */
async function listPath(backupPath, given, identity) {
    const path = userPath(given);
    if (typeof path === 'string')
        throw new InputError(`Invalid option --list: ${path}`);
    const { manifest, entries } = await listBackupPath(backupPath, path, identity);
    const base = memberOf(path.user, path.path);
    process.stdout.write(`${path.user}/${path.path} in the backup of ${manifest.startedAt} (${manifest.name}):\n`);
    for (const entry of entries) {
        const relative = entry.name === base ? '.' : entry.name.slice(base.length + 1);
        const size = entry.type === 'directory' ? '-' : String(entry.size);
        const name = entry.type === 'directory' ? `${relative}/` : relative;
        const link = entry.type === 'symlink' ? ` -> ${entry.linkTarget}` : '';
        process.stdout.write(`${size.padStart(12)}  ${entry.mtime}  ${JSON.stringify(name).slice(1, -1)}${link}\n`);
    }
    return EXIT.ok;
}
function pathRestoreSummary(result) {
    const { manifest } = result;
    const lines = [
        `Restore complete: ${result.placed.length} file${result.placed.length === 1 ? '' : 's'} from ${manifest.name} (backed up ${manifest.startedAt}) into ${result.target}`,
        ...result.placed
            .slice(0, 50)
            .map((p) => `  restored ${p.user}/${p.from}${p.to !== p.from ? ` as ${p.user}/${p.to}` : ''}`),
        ...(result.placed.length > 50 ? [`  … and ${result.placed.length - 50} more`] : []),
        ...(result.unchanged ? [`  ${result.unchanged} already as in the backup, left alone`] : []),
        ...result.skipped.map((s) => `  skipped ${s.user}/${s.path}: ${s.reason}`),
        ...(result.skipped.length
            ? ['  (restore skipped files with --overwrite, or beside the current ones with --as-copy)']
            : []),
        ...(result.scanned.length ? [`  occ files:scan: ${result.scanned.join(', ')}`] : []),
        ...(result.filesOnly.length
            ? [
                `  restored as files (versions and trash bin are not scanned): ${result.filesOnly.join(', ')}`,
            ]
            : []),
        ...(result.cacheRows
            ? [`  ${result.cacheRows} file cache rows hold the encryption values recorded at backup time`]
            : []),
        result.previous
            ? `  ${result.replaced} replaced item${result.replaced === 1 ? '' : 's'} kept in ${result.previous}: owncloud-backup restore --cleanup removes ${result.replaced === 1 ? 'it' : 'them'}`
            : '  nothing was replaced',
        `  took ${formatSeconds(result.seconds)}`,
    ];
    return `${lines.join('\n')}\n`;
}
async function verify(args) {
    let parsed;
    try {
        parsed = (0,external_node_util_namespaceObject.parseArgs)({
            args,
            options: { 'restore-test': { type: 'boolean' }, 'identity-file': { type: 'string' } },
            allowPositionals: true,
            strict: true,
        });
    }
    catch {
        parsed = undefined;
    }
    if (!parsed || parsed.positionals.length !== 1) {
        process.stderr.write('owncloud-backup: error: Expected: owncloud-backup verify [--restore-test] [--identity-file FILE] BACKUP-DIR\n');
        return EXIT.usage;
    }
    const restoreTest = parsed.values['restore-test'] === true;
    const directory = parsed.positionals[0];
    let identity;
    try {
        identity = planInstance({ [INPUTS.identity]: identityFrom(parsed.values['identity-file'], process.env)?.text ?? '' }, (name) => name === INPUTS.identity && parsed.values['identity-file']
            ? 'option --identity-file'
            : name === INPUTS.identity
                ? `environment variable ${ENV.identity}`
                : cliLabel(name)).identity;
    }
    catch (error) {
        process.stderr.write(`owncloud-backup: error: ${describeError(error)}\n`);
        return EXIT.usage;
    }
    // The restore test starts a server: Ctrl-C stops it and removes its directory first.
    const controller = new AbortController();
    const onSignal = () => controller.abort();
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
        const { checks, restoreTest: test } = await withIdentity(identity, (identityFile) => restoreTest
            ? verifyAndTestRestore(directory, {
                signal: controller.signal,
                ...(identityFile ? { identityFile } : {}),
            })
            : verifyBackup(directory, undefined, identityFile).then((all) => ({
                checks: all,
                restoreTest: undefined,
            })));
        for (const check of checks)
            process.stdout.write(`${check.ok ? 'ok    ' : check.unchecked ? 'NOT RUN' : 'FAILED'}  ${check.what}\n`);
        const failed = checks.filter((c) => !c.ok && !c.unchecked).length;
        const unchecked = checks.filter((c) => c.unchecked).length;
        process.stdout.write(failed > 0
            ? `${directory}: DAMAGED (${failed} of ${checks.length} checks failed).\n`
            : unchecked > 0
                ? `${directory}: the encrypted files are whole (${checks.length - unchecked} checks of their size and SHA-256), their content is unchecked (${unchecked} checks not run): give --identity-file or ${ENV.identity} to check it.\n`
                : `${directory}: intact (${checks.length} checks).\n`);
        if (failed > 0) {
            if (restoreTest)
                process.stdout.write('restore test not run: the backup is damaged.\n');
            return EXIT.failed;
        }
        if (unchecked > 0) {
            if (restoreTest)
                process.stdout.write('restore test not run: the backup is encrypted and no identity was given.\n');
            return EXIT.skipped;
        }
        if (!test)
            return EXIT.ok;
        process.stdout.write(`${restoreTestLine(test)}\n`);
        return test.result === 'passed'
            ? EXIT.ok
            : test.result === 'skipped'
                ? EXIT.skipped
                : EXIT.failed;
    }
    catch (error) {
        if (error instanceof InterruptedError || controller.signal.aborted) {
            process.stderr.write('owncloud-backup: error: interrupted; the throwaway server was stopped.\n');
            return EXIT.interrupted;
        }
        // Nothing to check (no such directory, no manifest) is a failed check, not bad usage.
        const message = error instanceof UnverifiableError ? error.message : describeError(error);
        process.stderr.write(`owncloud-backup: error: ${message}\n`);
        return EXIT.failed;
    }
    finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
    }
}
/**
 * A reader that went away (`owncloud-backup verify DIR | head -1`) is no error: the rest of
 * the output is dropped quietly and the command still ends as it would have (a backup
 * still restores maintenance mode), with its own exit status.
 */
function dropOutputToClosedPipes() {
    for (const stream of [process.stdout, process.stderr])
        stream.on('error', (error) => {
            if (error.code !== 'EPIPE')
                throw error;
        });
}


/***/ })

/******/ });
/************************************************************************/
/******/ // The module cache
/******/ var __webpack_module_cache__ = {};
/******/ 
/******/ // The require function
/******/ function __nccwpck_require__(moduleId) {
/******/ 	// Check if module is in cache
/******/ 	var cachedModule = __webpack_module_cache__[moduleId];
/******/ 	if (cachedModule !== undefined) {
/******/ 		return cachedModule.exports;
/******/ 	}
/******/ 	// Create a new module (and put it into the cache)
/******/ 	var module = __webpack_module_cache__[moduleId] = {
/******/ 		// no module.id needed
/******/ 		// no module.loaded needed
/******/ 		exports: {}
/******/ 	};
/******/ 
/******/ 	// Execute the module function
/******/ 	var threw = true;
/******/ 	try {
/******/ 		__webpack_modules__[moduleId](module, module.exports, __nccwpck_require__);
/******/ 		threw = false;
/******/ 	} finally {
/******/ 		if(threw) delete __webpack_module_cache__[moduleId];
/******/ 	}
/******/ 
/******/ 	// Return the exports of the module
/******/ 	return module.exports;
/******/ }
/******/ 
/************************************************************************/
/******/ /* webpack/runtime/asset-relocator-loader */
/******/ if (typeof __nccwpck_require__ !== 'undefined') __nccwpck_require__.ab = decodeURIComponent(new URL('.', import.meta.url).pathname).slice(import.meta.url.match(/^file:\/\/\/\w:/) ? 1 : 0, -1) + "/";
/******/ 
/******/ /* webpack/runtime/async module */
/******/ (() => {
/******/ 	var webpackQueues = typeof Symbol === "function" ? Symbol("webpack queues") : "__webpack_queues__";
/******/ 	var webpackExports = typeof Symbol === "function" ? Symbol("webpack exports") : "__webpack_exports__";
/******/ 	var webpackError = typeof Symbol === "function" ? Symbol("webpack error") : "__webpack_error__";
/******/ 	var resolveQueue = (queue) => {
/******/ 		if(queue && queue.d < 1) {
/******/ 			queue.d = 1;
/******/ 			queue.forEach((fn) => (fn.r--));
/******/ 			queue.forEach((fn) => (fn.r-- ? fn.r++ : fn()));
/******/ 		}
/******/ 	}
/******/ 	var wrapDeps = (deps) => (deps.map((dep) => {
/******/ 		if(dep !== null && typeof dep === "object") {
/******/ 			if(dep[webpackQueues]) return dep;
/******/ 			if(dep.then) {
/******/ 				var queue = [];
/******/ 				queue.d = 0;
/******/ 				dep.then((r) => {
/******/ 					obj[webpackExports] = r;
/******/ 					resolveQueue(queue);
/******/ 				}, (e) => {
/******/ 					obj[webpackError] = e;
/******/ 					resolveQueue(queue);
/******/ 				});
/******/ 				var obj = {};
/******/ 				obj[webpackQueues] = (fn) => (fn(queue));
/******/ 				return obj;
/******/ 			}
/******/ 		}
/******/ 		var ret = {};
/******/ 		ret[webpackQueues] = x => {};
/******/ 		ret[webpackExports] = dep;
/******/ 		return ret;
/******/ 	}));
/******/ 	__nccwpck_require__.a = (module, body, hasAwait) => {
/******/ 		var queue;
/******/ 		hasAwait && ((queue = []).d = -1);
/******/ 		var depQueues = new Set();
/******/ 		var exports = module.exports;
/******/ 		var currentDeps;
/******/ 		var outerResolve;
/******/ 		var reject;
/******/ 		var promise = new Promise((resolve, rej) => {
/******/ 			reject = rej;
/******/ 			outerResolve = resolve;
/******/ 		});
/******/ 		promise[webpackExports] = exports;
/******/ 		promise[webpackQueues] = (fn) => (queue && fn(queue), depQueues.forEach(fn), promise["catch"](x => {}));
/******/ 		module.exports = promise;
/******/ 		body((deps) => {
/******/ 			currentDeps = wrapDeps(deps);
/******/ 			var fn;
/******/ 			var getResult = () => (currentDeps.map((d) => {
/******/ 				if(d[webpackError]) throw d[webpackError];
/******/ 				return d[webpackExports];
/******/ 			}))
/******/ 			var promise = new Promise((resolve) => {
/******/ 				fn = () => (resolve(getResult));
/******/ 				fn.r = 0;
/******/ 				var fnQueue = (q) => (q !== queue && !depQueues.has(q) && (depQueues.add(q), q && !q.d && (fn.r++, q.push(fn))));
/******/ 				currentDeps.map((dep) => (dep[webpackQueues](fnQueue)));
/******/ 			});
/******/ 			return fn.r ? promise : getResult();
/******/ 		}, (err) => ((err ? reject(promise[webpackError] = err) : outerResolve(exports)), resolveQueue(queue)));
/******/ 		queue && queue.d < 0 && (queue.d = 0);
/******/ 	};
/******/ })();
/******/ 
/******/ /* webpack/runtime/define property getters */
/******/ (() => {
/******/ 	// define getter functions for harmony exports
/******/ 	__nccwpck_require__.d = (exports, definition) => {
/******/ 		for(var key in definition) {
/******/ 			if(__nccwpck_require__.o(definition, key) && !__nccwpck_require__.o(exports, key)) {
/******/ 				Object.defineProperty(exports, key, { enumerable: true, get: definition[key] });
/******/ 			}
/******/ 		}
/******/ 	};
/******/ })();
/******/ 
/******/ /* webpack/runtime/hasOwnProperty shorthand */
/******/ (() => {
/******/ 	__nccwpck_require__.o = (obj, prop) => (Object.prototype.hasOwnProperty.call(obj, prop))
/******/ })();
/******/ 
/************************************************************************/
/******/ 
/******/ // startup
/******/ // Load entry module and return exports
/******/ // This entry module used 'module' so it can't be inlined
/******/ var __webpack_exports__ = __nccwpck_require__(581);
/******/ __webpack_exports__ = await __webpack_exports__;
/******/ 
