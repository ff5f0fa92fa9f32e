<?php

/**
 * IDE stubs for the fluxo extension (Fluxo Export). Not loaded at run time.
 *
 * See README.md of Fluxo Export for the full guide.
 */

namespace Fluxo;

/** Base class of every error the extension throws. */
class ExportException extends \Exception
{
}

/** A row or cell cannot be written; the message names the row index, column and PHP type. */
class InvalidRowException extends ExportException
{
}

/** An option or setting is unknown or has a wrong value; the message names the key. */
class InvalidOptionException extends ExportException
{
}

/** The file could not be written or stored (disk, permissions, store). */
class StorageException extends ExportException
{
}

/** One export: feed rows, then finish (or cancel). */
class Exporter
{
    /**
     * @param array{
     *     format?: 'csv'|'xlsx',
     *     filename?: string,
     *     sheet?: string,
     *     columns: list<string|array{name: string, type?: 'auto'|'string'|'int'|'number'|'bool'|'date'|'datetime'|'time'|'date_or_datetime', key?: string|int, format?: string, width?: int|float|'auto', hidden?: bool}>,
     *     total_rows?: int,
     *     storage?: 'local'|'oss'|'s3',
     *     local_dir?: string,
     *     url_expires?: int,
     *     autofilter?: bool,
     *     properties?: array{title?: string, author?: string, company?: string, created?: string},
     *     long_text?: 'error'|'truncate',
     *     invalid_utf8?: 'error'|'replace',
     *     timezone?: string,
     *     csv?: array{delimiter?: string, enclosure?: string, bom?: bool, header?: bool, line_ending?: "\n"|"\r\n", encoding?: 'UTF-8'|'GBK'|'GB18030'|'UTF-16LE', unencodable?: 'error'|'replace', formula_guard?: bool, excel_text?: bool, decimal_separator?: '.'|',', compression?: 'none'|'gzip', date_format?: string, datetime_format?: string, time_format?: string, null?: string, true?: string, false?: string}
     * } $options
     * @throws InvalidOptionException
     */
    public function __construct(array $options)
    {
    }

    /** The id of this export's task, for {@see Exporter::status()}. */
    public function taskId(): string
    {
    }

    /**
     * Adds rows (lists by position, or assoc arrays by column key). A bad row rejects the whole batch.
     *
     * @param list<array<array-key, mixed>> $rows
     * @return int the running row count
     * @throws InvalidRowException
     * @throws ExportException
     */
    public function addBatch(array $rows): int
    {
    }

    /**
     * @param array<array-key, mixed> $row
     * @return int the running row count
     * @throws InvalidRowException
     * @throws ExportException
     */
    public function addRow(mixed $row): int
    {
    }

    /**
     * XLSX only: starts another sheet. Columns default to the current ones.
     *
     * @param list<string|array<string, mixed>>|null $columns
     * @throws InvalidOptionException
     */
    public function sheet(string $name, ?array $columns = null): void
    {
    }

    /**
     * Waits for the file (also after finishAsync(): the script may do other work
     * in between). Throws if PHP's time limit runs out meanwhile; PHP then ends
     * the script with its own "Maximum execution time" error.
     *
     * @throws ExportException
     * @throws StorageException
     */
    public function finish(): ExportResult
    {
    }

    /**
     * Returns the task id at once; the file is completed in the background.
     * Exporter::status() tells its progress; finish() waits for it.
     */
    public function finishAsync(): string
    {
    }

    /** Abandons the export: status CANCELLED (waits up to 2 s for it), no file left. */
    public function cancel(): void
    {
    }

    /**
     * Status of any task on this host; null for an unknown id.
     *
     * @throws InvalidOptionException for a malformed id
     */
    public static function status(string $task_id): ?TaskStatus
    {
    }
}

/**
 * A finished export. Its properties are set by the extension (untyped at
 * run time; the @var tags say what they hold).
 */
class ExportResult
{
    /** @var string */
    public $taskId;
    /**
     * @var string a signed download URL: from the store (oss, s3), or, for local
     *     storage, from fluxo.public_base_url when fluxo.download_secret is set;
     *     else the file:// URL of the local file
     */
    public $url;
    /** @var string object key: {key_prefix/}{YYYY}/{MM}/{DD}/{taskId}/{filename} */
    public $key;
    /** @var string|null */
    public $path;
    /** @var string */
    public $filename;
    /** @var string 'csv' or 'xlsx' */
    public $format;
    /** @var int data rows written (header excluded) */
    public $records;
    /** @var int */
    public $bytes;
    /** @var string hex SHA-256 of the file */
    public $sha256;
    /** @var int */
    public $durationMs;
    /** @var int */
    public $sheets;
    /** @internal made by the extension: `new` in PHP throws */
    public function __construct()
    {
    }
}

/** A task's state, readable from any process on the host. */
class TaskStatus
{
    /** @var string */
    public $taskId;
    /** @var string QUEUED, PROCESSING, UPLOADING, COMPLETED, FAILED or CANCELLED */
    public $state;
    /** @var int 0-100 (needs total_rows; 100 once COMPLETED) */
    public $progress;
    /** @var int */
    public $records;
    /** @var int|null */
    public $totalRows;
    /** @var int the file's size; while PROCESSING, what is written so far (an XLSX counts its compressed rows) */
    public $bytes;
    /** @var int XLSX sheets begun (a sheet past 1,048,575 rows continues on "Name (2)") */
    public $sheets;
    /** @var string|null */
    public $url;
    /** @var string|null */
    public $key;
    /** @var string|null */
    public $path;
    /** @var string|null hex SHA-256 of the file, once COMPLETED */
    public $sha256;
    /** @var string|null */
    public $error;
    /** @internal made by the extension: `new` in PHP throws */
    public function __construct()
    {
    }
}

/**
 * The gRPC service, status API, health and metrics, served from this PHP
 * process (extension built with feature "server", as `make build` does).
 * It shares the process's task manager with in-process exports.
 */
class Server
{
    /** @internal the class is used through its static methods: `new` throws */
    public function __construct()
    {
    }

    /**
     * @param array<string, scalar> $options fluxo.* keys without the prefix
     *        (grpc_listen, status_listen, metrics_listen, auth_token, ...)
     * @throws InvalidOptionException
     * @throws ExportException when a port cannot be bound
     */
    public static function start(array $options): void
    {
    }

    /** Stops serving: running exports are drained (fluxo.shutdown_timeout). */
    public static function stop(): void
    {
    }

    public static function running(): bool
    {
    }
}
