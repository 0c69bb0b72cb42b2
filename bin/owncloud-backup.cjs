#!/usr/bin/env node
// The owncloud-backup command as installed from the package: checks the Node.js version in
// syntax that every Node.js parses, then loads the bundle (dist/cli/index.js, ESM for Node 24).
// On an older Node.js the bundle would crash deep inside a dependency; this says what to do.
'use strict';

var REQUIRED = 24;
var version = process.versions.node;

if (!(parseInt(version.split('.')[0], 10) >= REQUIRED)) {
  var message =
    'owncloud-backup: error: needs Node.js ' +
    REQUIRED +
    ' or newer, this is Node.js ' +
    version +
    ' (' +
    process.execPath +
    '); install Node.js ' +
    REQUIRED +
    ' (https://nodejs.org/en/download) and run owncloud-backup with it.\n';
  process.stderr.write(message);
  process.exit(2);
}

var path = require('path');
var url = require('url');
var bundle = url.pathToFileURL(path.join(__dirname, '..', 'dist', 'cli', 'index.js')).href;
// Inside a Function, so that a Node.js without import() still parses this file.
var load = new Function('specifier', 'return import(specifier)');
load(bundle).catch(function (error) {
  process.stderr.write(
    'owncloud-backup: error: cannot load ' + bundle + ': ' + error.message + '\n'
  );
  process.exit(1);
});
