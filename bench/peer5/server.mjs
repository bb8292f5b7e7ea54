// PostGraphile 5 as a team would run it in production: the amber preset, no GraphiQL, no
// explain, one worker per core. Its CLI has no cluster option, so this is library mode
// under node:cluster (the workers share the listening port).
//
//   node server.mjs <postgres url> <port> <workers>
import cluster from 'node:cluster';
import { createServer } from 'node:http';

import { postgraphile } from 'postgraphile';
import { makePgService } from 'postgraphile/adaptors/pg';
import { grafserv } from 'postgraphile/grafserv/node';
import { PostGraphileAmberPreset } from 'postgraphile/presets/amber';
import { TagsFilePlugin } from 'postgraphile/utils';

const [connectionString, port, workers] = process.argv.slice(2);

if (cluster.isPrimary) {
  for (let i = 0; i < Number(workers); i += 1) cluster.fork();
  cluster.on('exit', (worker, code) => {
    console.error(`peer5: worker ${worker.process.pid} left with ${code}`);
    process.exit(1);
  });
} else {
  const pgl = postgraphile({
    extends: [PostGraphileAmberPreset],
    plugins: [TagsFilePlugin],
    pgServices: [makePgService({ connectionString, schemas: ['public'] })],
    grafserv: { graphiql: false, watch: false },
    grafast: { explain: false },
  });
  const serv = pgl.createServ(grafserv);
  const server = createServer();
  await serv.addTo(server);
  server.listen(Number(port), '127.0.0.1');
}
