<?php

declare(strict_types=1);

namespace Fluxo\Tests\Support;

/**
 * Plain HTTP GET through PHP's http:// stream wrapper (no curl extension needed).
 */
final class Http
{
    /**
     * Status 0 means nothing answered (connection refused, timeout).
     *
     * @return array{status: int, headers: array<string, string>, body: string}
     */
    public static function get(string $url, float $timeout = 60.0): array
    {
        $context = stream_context_create([
            'http' => [
                'method' => 'GET',
                'ignore_errors' => true,
                'follow_location' => 0,
                'timeout' => $timeout,
                'protocol_version' => 1.1,
                'header' => "Connection: close\r\n",
            ],
        ]);
        $http_response_header = [];
        $body = @file_get_contents($url, false, $context);
        $status = 0;
        $headers = [];
        foreach ($http_response_header as $line) {
            if (preg_match('#^HTTP/\S+\s+(\d{3})#', $line, $m) === 1) {
                $status = (int) $m[1];
                $headers = [];
                continue;
            }
            $pos = strpos($line, ':');
            if ($pos !== false) {
                $headers[strtolower(trim(substr($line, 0, $pos)))] = trim(substr($line, $pos + 1));
            }
        }
        return ['status' => $status, 'headers' => $headers, 'body' => $body === false ? '' : $body];
    }

    /**
     * True once anything answers HTTP on the URL (any status), polling up to $seconds.
     */
    public static function waitUntilAnswers(string $url, float $seconds): bool
    {
        $deadline = microtime(true) + $seconds;
        do {
            if (self::get($url, 2.0)['status'] > 0) {
                return true;
            }
            usleep(100000);
        } while (microtime(true) < $deadline);
        return false;
    }

    /**
     * The query parameters of a URL, percent-decoded ('+' stays '+').
     *
     * @return array<string, string>
     */
    public static function query(string $url): array
    {
        $query = (string) parse_url($url, PHP_URL_QUERY);
        $params = [];
        foreach ($query === '' ? [] : explode('&', $query) as $pair) {
            [$name, $value] = array_pad(explode('=', $pair, 2), 2, '');
            $params[rawurldecode($name)] = rawurldecode($value);
        }
        return $params;
    }
}
