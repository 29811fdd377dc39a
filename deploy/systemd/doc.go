// Package systemd holds no Go code: this directory is the systemd
// deployment of a Pleiades node (pleiades.target, one pleiades-<daemon>
// unit per daemon, the node's settings in pleiades.env, the bus's UDP buffer
// limits in 90-pleiades.conf for sysctl.d, install.sh), and
// its tests check the units with systemd-analyze verify and for the
// shape every unit must have.
package systemd
