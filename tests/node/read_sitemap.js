// Reads one sitemap file (gzipped or not) with the npm `sitemap` package's own parser and prints its items as
// JSON on stdout. Anything the parser does not recognise or finds invalid makes it fail (ErrorLevel.THROW).
'use strict';
const fs = require('fs');
const zlib = require('zlib');
const { Readable } = require('stream');
const { XMLToSitemapItemStream, ErrorLevel } = require('sitemap');

async function main(path) {
  let data = fs.readFileSync(path);
  if (path.endsWith('.gz')) data = zlib.gunzipSync(data);
  const items = [];
  const problems = [];
  const parser = new XMLToSitemapItemStream({
    level: ErrorLevel.THROW,
    logger: (level, ...message) => problems.push(`${level}: ${message.join(' ')}`),
  });
  await new Promise((resolve, reject) => {
    Readable.from([data]).pipe(parser).on('data', (item) => items.push(item)).on('end', resolve)
      .on('error', reject);
    parser.on('error', reject);
  });
  if (problems.length) throw new Error(`the parser complained: ${problems.join('; ')}`);
  process.stdout.write(JSON.stringify(items));
}

main(process.argv[2]).catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
