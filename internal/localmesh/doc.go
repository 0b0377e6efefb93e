// Package localmesh runs a whole mesh on one machine (`zmesh up`): a control
// plane process and, for each workload declared in the mesh directory, the
// workload's app process behind its own `zmesh proxy` process. It allocates
// loopback ports, issues each proxy a bootstrap token, supervises every
// process (restarting the ones that die) and prints the contract lines of
// DESIGN §5 so that scripts and tests can find the pieces.
package localmesh
