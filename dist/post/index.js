// The post step: the actions' bundle, which takes the step from this file's directory.
import '../action/index.js';
