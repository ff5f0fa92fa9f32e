<?php

// CSV that Excel opens right: UTF-8 with a BOM by default, or GBK for Excel on a
// Chinese Windows; formulas from user data are neutralised (OWASP CSV injection).
declare(strict_types=1);

$rows = [['张伟', '=HYPERLINK("http://evil.example","click")'], ['王芳', '-10+20']];

$utf8 = new Fluxo\Exporter(['columns' => ['Name', 'Comment']]);
$utf8->addBatch($rows);
$r = $utf8->finish();
echo "wrote {$r->path} ({$r->records} rows)\n";

$gbk = new Fluxo\Exporter([
    'columns' => ['Name', 'Comment'],
    'csv' => ['encoding' => 'GBK', 'unencodable' => 'replace', 'delimiter' => ';', 'line_ending' => "\r\n"],
]);
$gbk->addBatch($rows);
$r = $gbk->finish();
echo "wrote {$r->path} ({$r->records} rows)\n";
